"""Twilio's routes on ``voxpipe serve``: point a phone number's voice webhook at ``/twilio/voice``.

- ``POST /twilio/voice``: Twilio's voice webhook. Answers with TwiML that
  connects the call to a bidirectional Media Stream at ``/twilio``, carrying
  a single-use call token (bound to the ``CallSid``) as a ``<Parameter>``.
  With an auth token configured, the request must carry a valid
  ``X-Twilio-Signature`` (403 otherwise).
- ``GET /twilio``: the Media Stream's WebSocket. The stream must present its
  token in ``start``'s ``customParameters``; each stream is one voxpipe call
  (``ServeApp.admit``) with the graph, guardrails and artifacts of any
  other. Refused (503, before the upgrade) when the server has no room.

Mount with :func:`add_twilio_routes`. What these routes do is verified
against a fake Twilio peer built from Twilio's documentation
(``tests/support/fake_twilio.py``), not against Twilio itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from loguru import logger

from voxpipe.errors import (
    CallTokenRejected,
    CallTokenRejectReason,
    ConfigError,
    VoxpipeError,
    WebhookRejected,
)
from voxpipe.telephony.twilio import MessageMalformed, StreamStarted, TwilioStream
from voxpipe.telephony.webhook import (
    SIGNATURE_HEADER,
    connect_stream_twiml,
    verify_twilio_signature,
)
from voxpipe.transports.telephony.transport import TwilioCallTransport, close_quietly
from voxpipe.webrtc.call_tokens import CallTokens, server_secret

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
PUBLIC_URL_ENV = "VOXPIPE_PUBLIC_URL"
STREAM_PATH = "/twilio"
VOICE_PATH = "/twilio/voice"
TOKEN_PARAMETER = "token"
_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013
_INTERNAL_ERROR = 1011


@dataclasses.dataclass
class TwilioConfig:
    """How ``voxpipe serve`` takes Twilio calls.

    ``auth_token`` set: webhook requests must be signed with it.
    ``public_url``: the ``https://host[:port]`` Twilio reaches this server at
    (behind a proxy the server sees another URL, and the signature covers the
    public one); unset, the request's own URL is used. ``tokens`` mints and
    redeems the streams' call tokens (default: the server's call tokens, or
    ones made for this process).
    """

    auth_token: str | None = None
    public_url: str | None = None
    tokens: CallTokens | None = None
    silent_ms: int = 2_000  # a stream not heard from this long is gone (media comes every 20 ms)
    start_timeout_s: float = 5.0  # a socket that never sends its start holds nothing
    mark_interval_ms: float = 100
    confirm_within_ms: float = 1_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TwilioConfig:
        """``TWILIO_AUTH_TOKEN`` and ``VOXPIPE_PUBLIC_URL`` from the environment."""
        env = os.environ if environ is None else environ
        return cls(
            auth_token=env.get(AUTH_TOKEN_ENV) or None,
            public_url=env.get(PUBLIC_URL_ENV) or None,
        )

    @classmethod
    def for_serve(cls, loopback: bool, environ: Mapping[str, str] | None = None) -> TwilioConfig:
        """The environment's config, refused beyond loopback without an auth token.

        Unsigned webhooks are fine on a developer's machine; on a public address
        anyone could start calls (and spend the brain's money) by posting to them.
        """
        config = cls.from_env(environ)
        if not loopback and config.auth_token is None:
            raise ConfigError(
                f"--twilio on a non-loopback address needs {AUTH_TOKEN_ENV} "
                "(the account's auth token) so that Twilio's webhook signatures are checked"
            )
        return config


def add_twilio_routes(
    app: web.Application, serve: ServeApp, config: TwilioConfig | None = None
) -> TwilioRoutes:
    """Mount ``POST /twilio/voice`` and ``GET /twilio`` on ``serve``'s app."""
    routes = TwilioRoutes(serve, config or TwilioConfig())
    app.router.add_post(VOICE_PATH, routes.voice)
    app.router.add_get(STREAM_PATH, routes.stream)
    return routes


class TwilioRoutes:
    """The two Twilio routes of one ``voxpipe serve``."""

    def __init__(self, serve: ServeApp, config: TwilioConfig) -> None:
        self.serve = serve
        self.config = config
        self.tokens = config.tokens or serve.config.call_tokens
        if self.tokens is None:
            self.tokens = CallTokens(server_secret().value)
        if config.auth_token is None and not serve.loopback:
            logger.warning(
                f"{AUTH_TOKEN_ENV} is not set: /twilio/voice answers requests Twilio did not sign"
            )

    # -- the voice webhook --------------------------------------------------------------

    async def voice(self, request: web.Request) -> web.Response:
        """Answer a call with TwiML connecting it to the Media Stream."""
        form = await request.post()
        params = [(name, str(value)) for name, value in form.items()]
        if self.config.auth_token is not None:
            try:
                verify_twilio_signature(
                    self.config.auth_token,
                    self._public(request, request.path_qs),
                    params,
                    request.headers.get(SIGNATURE_HEADER),
                )
            except WebhookRejected as exc:
                logger.warning(f"refused a Twilio webhook: {exc}")
                return web.Response(status=403, text=f"forbidden: {exc.reason.value}\n")
        if not self.serve.has_room():
            twiml = (
                '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'
            )
            return web.Response(text=twiml, content_type="text/xml")
        call_sid = str(form.get("CallSid", ""))[:128]
        token = self._tokens.mint(time.time(), subject=call_sid)
        stream_url = _websocket_url(self._public(request, STREAM_PATH))
        twiml = connect_stream_twiml(stream_url, {TOKEN_PARAMETER: token})
        return web.Response(text=twiml, content_type="text/xml")

    # -- the media stream ---------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """One Media Stream: one call, until the stream or the call ends."""
        if not self.serve.has_room():
            return web.json_response(
                {
                    "error": {
                        "code": "busy",
                        "message": "This server is taking all the calls it can.",
                    }
                },
                status=503,
            )
        websocket = web.WebSocketResponse(max_msg_size=1024 * 1024)
        await websocket.prepare(request)
        stream = TwilioStream()
        started = await self._started(websocket, stream)
        if started is None:
            return websocket
        transport = self._admit(websocket, stream, started)
        if transport is None:
            return websocket
        try:
            async for message in websocket:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await transport.receive(message.data)
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            transport.socket_closed()
        return websocket

    async def _started(
        self, websocket: web.WebSocketResponse, stream: TwilioStream
    ) -> StreamStarted | None:
        """Read up to the stream's ``start`` and check its token; None if refused or gone."""
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                async for message in websocket:
                    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        continue
                    event = stream.receive(message.data)
                    if isinstance(event, StreamStarted):
                        return await self._checked(websocket, event)
                    if isinstance(event, MessageMalformed):
                        logger.warning(f"twilio stream before start: skipped {event.reason.value}")
        except TimeoutError:
            logger.warning("a Twilio stream sent no start in time; closed")
            await websocket.close(code=_POLICY_VIOLATION, message=b"no start")
        return None

    async def _checked(
        self, websocket: web.WebSocketResponse, started: StreamStarted
    ) -> StreamStarted | None:
        try:
            redeemed = self._tokens.redeem(
                started.custom_parameters.get(TOKEN_PARAMETER), time.time()
            )
            if redeemed.subject and redeemed.subject != started.call_sid[:128]:
                raise CallTokenRejected(
                    "This call token belongs to another call.",
                    reason=CallTokenRejectReason.FORGED,
                )
        except CallTokenRejected as exc:
            logger.warning(f"refused Twilio stream {started.stream_sid}: {exc.reason.value}")
            await websocket.close(
                code=_POLICY_VIOLATION, message=f"token {exc.reason.value}".encode()
            )
            return None
        return started

    def _admit(
        self, websocket: web.WebSocketResponse, stream: TwilioStream, started: StreamStarted
    ) -> TwilioCallTransport | None:
        serve = self.serve
        transport = TwilioCallTransport(
            websocket,
            stream,
            record_audio=serve.config.call.record_dir is not None,
            silent_ms=self.config.silent_ms,
            mark_interval_ms=self.config.mark_interval_ms,
            confirm_within_ms=self.config.confirm_within_ms,
        )
        call_id = uuid.uuid4().hex[:12]

        async def closed() -> None:
            await close_quietly(websocket)

        if not serve.has_room():
            asyncio.get_running_loop().create_task(
                websocket.close(code=_TRY_AGAIN_LATER, message=b"busy")
            )
            return None
        try:
            serve.admit(call_id, transport, closed=closed)
        except VoxpipeError as exc:
            logger.error(f"call {call_id}: could not build its graph: {exc}")
            asyncio.get_running_loop().create_task(
                websocket.close(code=_INTERNAL_ERROR, message=b"call setup failed")
            )
            return None
        logger.info(
            f"call {call_id} answered (twilio call {started.call_sid}, stream {started.stream_sid})"
        )
        return transport

    @property
    def _tokens(self) -> CallTokens:
        assert self.tokens is not None
        return self.tokens

    def _public(self, request: web.Request, path_qs: str) -> str:
        base = self.config.public_url or f"{request.scheme}://{request.host}"
        return base.rstrip("/") + path_qs


def _websocket_url(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    return "ws://" + url.removeprefix("http://")
