"""What every provider's routes on ``voxpipe serve`` share: the stream socket, tokens, config.

A provider's routes are two: its voice webhook (``POST /<provider>/voice``),
which checks the provider's signature, refuses a replay and answers with the
XML that connects the call to a bidirectional stream carrying a single-use
call token bound to the provider's call id; and the stream itself
(``GET /<provider>``), which is the same for every provider and lives here
(:class:`StreamRoutes`): refused before the upgrade when the server is full,
then the provider's ``start`` must come within ``start_timeout_s`` and
present the token for its own call, and the stream becomes one voxpipe call
(``ServeApp.admit``) over a
:class:`~voxpipe.transports.telephony.transport.PhoneCallTransport`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Self

from aiohttp import WSMsgType, web
from loguru import logger

from voxpipe.echo import EchoGuardConfig
from voxpipe.errors import (
    CallTokenRejected,
    CallTokenRejectReason,
    ConfigError,
    VoxpipeError,
    WebhookRejected,
)
from voxpipe.telephony.events import MessageMalformed, Provider, StreamStarted
from voxpipe.telephony.hangup import RestHangup
from voxpipe.telephony.replay import DEFAULT_WINDOW_S, ReplayGuard
from voxpipe.telephony.stream import MediaStream
from voxpipe.transports.telephony.hangup import hang_up
from voxpipe.transports.telephony.transport import PhoneCallTransport, close_quietly
from voxpipe.webrtc.call_tokens import CallTokens, server_secret

if TYPE_CHECKING:
    from voxpipe.pipelines.live_call import LiveCall
    from voxpipe.transports.webrtc.app import ServeApp

PUBLIC_URL_ENV = "VOXPIPE_PUBLIC_URL"
TOKEN_PARAMETER = "token"
_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013
_INTERNAL_ERROR = 1011


@dataclasses.dataclass(kw_only=True)
class PhoneConfig:
    """How ``voxpipe serve`` takes one provider's calls (a provider's config adds its secret).

    ``rest_hangup``: when voxpipe ends a call (the agent or application ends
    it, its time limit, the server stopping), also hang up the provider's
    call through its REST API; None (the default) closes the stream only.
    ``g711_passthrough``: on the realtime path, the session speaks the
    caller's law, so the caller's bytes reach the brain and the brain's
    reach the caller unchanged (the chained path always transcodes).
    ``public_url``: the ``https://host[:port]`` the provider reaches this
    server at (behind a proxy the server sees another URL, and signatures
    cover the public one); unset, the request's own URL is used. ``tokens``
    mints and redeems the streams' call tokens (default: the server's call
    tokens, or ones made for this process). ``replay_window_s``: how long a
    signed webhook is remembered so that it is answered once.
    ``echo_guard``: None (the default) takes the caller's audio as it comes.
    Phone networks and handsets cancel echo before the stream reaches us, and
    on a line with no echo the guard's coupling stays at its prior, so the
    first words of a caller who speaks soon after the bot were silenced (a
    phone-band test lost "I would like to book an" of one line and measured
    a word error rate of 0.17-0.31 with the guard against 0.02-0.04 without).
    Give an :class:`~voxpipe.echo.EchoGuardConfig` for a line known to echo.
    """

    secret_env: ClassVar[str]
    flag: ClassVar[str]  # ``voxpipe serve``'s option, named in errors

    public_url: str | None = None
    tokens: CallTokens | None = None
    silent_ms: int = 2_000  # a stream not heard from this long is gone (media comes every 20 ms)
    start_timeout_s: float = 5.0  # a socket that never sends its start holds nothing
    mark_interval_ms: float = 100
    confirm_within_ms: float = 1_000
    replay_window_s: float = DEFAULT_WINDOW_S
    # A realtime brain takes the caller's G.711 as it came and answers in it (no transcoding).
    g711_passthrough: bool = True
    # When voxpipe ends a call, also hang it up through the provider's REST API (None: never).
    rest_hangup: RestHangup | None = None
    echo_guard: EchoGuardConfig | None = None

    @property
    def signed(self) -> bool:
        """Whether webhook signatures are checked (the provider's secret is set)."""
        raise NotImplementedError

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The provider's secret and ``VOXPIPE_PUBLIC_URL`` from the environment."""
        raise NotImplementedError

    @classmethod
    def for_serve(cls, loopback: bool, environ: Mapping[str, str] | None = None) -> Self:
        """The environment's config, refused beyond loopback without the provider's secret."""
        config = cls.from_env(environ)
        config.check_for_serve(loopback)
        return config

    def check_for_serve(self, loopback: bool) -> None:
        """Refuse unsigned webhooks beyond loopback.

        Unsigned webhooks are fine on a developer's machine; on a public address
        anyone could start calls (and spend the brain's money) by posting to them.
        """
        if not loopback and not self.signed:
            raise ConfigError(
                f"{self.flag} on a non-loopback address needs {self.secret_env} "
                "so that the provider's webhook signatures are checked"
            )


@dataclasses.dataclass(kw_only=True)
class AuthTokenConfig(PhoneConfig):
    """A provider whose webhooks are signed with the account's auth token (Twilio, Plivo)."""

    auth_token: str | None = None

    @property
    def signed(self) -> bool:
        return self.auth_token is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The auth token (``secret_env``) and ``VOXPIPE_PUBLIC_URL`` from the environment."""
        env = os.environ if environ is None else environ
        return cls(auth_token=env.get(cls.secret_env) or None, public_url=public_url(env))


def public_url(environ: Mapping[str, str]) -> str | None:
    return environ.get(PUBLIC_URL_ENV) or None


class StreamRoutes:
    """One provider's routes on one ``voxpipe serve``: the stream socket here, the webhook above."""

    provider: ClassVar[Provider]

    def __init__(self, serve: ServeApp, config: PhoneConfig) -> None:
        self.serve = serve
        self.config = config
        self.tokens = config.tokens or serve.config.call_tokens or CallTokens(server_secret().value)
        self.replays = ReplayGuard(config.replay_window_s)
        if not config.signed and not serve.loopback:
            logger.warning(
                f"{config.secret_env} is not set: /{self.provider.value}/voice answers "
                "requests the provider did not sign"
            )

    @property
    def stream_path(self) -> str:
        return f"/{self.provider.value}"

    @property
    def voice_path(self) -> str:
        return f"/{self.provider.value}/voice"

    def mount(self, app: web.Application) -> None:
        app.router.add_post(self.voice_path, self.voice)
        app.router.add_get(self.stream_path, self.stream)

    # -- the voice webhook ------------------------------------------------------------------

    async def voice(self, request: web.Request) -> web.Response:
        """Answer a call with the provider's XML connecting it to the stream, with its token."""
        try:
            call_sid = await self.verified_call(request)
        except WebhookRejected as exc:
            return self.refused(exc)
        if not self.serve.has_room():
            return web.Response(text=self.busy_answer, content_type="text/xml")
        answer = self.stream_answer(self.stream_url(request), self.mint(call_sid))
        return web.Response(text=answer, content_type="text/xml")

    # -- what a provider says its own way -------------------------------------------------

    busy_answer: ClassVar[str]  # the XML that turns a call away while the server is full

    async def verified_call(self, request: web.Request) -> str:
        """The webhook's call id, once its signature (if checked) holds and it is no replay.

        Raises ``WebhookRejected`` otherwise.
        """
        raise NotImplementedError

    def stream_answer(self, stream_url: str, token: str) -> str:
        """The XML that connects the call to ``stream_url``, carrying ``token``."""
        raise NotImplementedError

    def new_stream(self) -> MediaStream:
        raise NotImplementedError

    def token_of(self, started: StreamStarted) -> str | None:
        """The call token the stream presents (its ``start``'s parameters, by default)."""
        return started.custom_parameters.get(TOKEN_PARAMETER)

    # -- shared by the webhooks -------------------------------------------------------------

    def refused(self, exc: WebhookRejected) -> web.Response:
        logger.warning(f"refused a {self.provider.value} webhook: {exc}")
        return web.Response(status=403, text=f"forbidden: {exc.reason.value}\n")

    def admit_signed(self, key: str) -> None:
        """Refuse a signed request answered before (raises ``WebhookRejected``)."""
        self.replays.admit(key, time.time())

    def mint(self, call_sid: str) -> str:
        return self.tokens.mint(time.time(), subject=call_sid[:128])

    def public(self, request: web.Request, path_qs: str) -> str:
        base = self.config.public_url or f"{request.scheme}://{request.host}"
        return base.rstrip("/") + path_qs

    def stream_url(self, request: web.Request) -> str:
        url = self.public(request, self.stream_path)
        if url.startswith("https://"):
            return "wss://" + url.removeprefix("https://")
        return "ws://" + url.removeprefix("http://")

    # -- the media stream ---------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """One media stream: one call, until the stream or the call ends."""
        if not self.serve.has_room():
            error = {"code": "busy", "message": "This server is taking all the calls it can."}
            return web.json_response({"error": error}, status=503)
        websocket = web.WebSocketResponse(max_msg_size=1024 * 1024)
        await websocket.prepare(request)
        stream = self.new_stream()
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
        self, websocket: web.WebSocketResponse, stream: MediaStream
    ) -> StreamStarted | None:
        """Read up to the stream's ``start`` and check its token; None if refused or gone."""
        name = self.provider.value
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                async for message in websocket:
                    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        continue
                    event = stream.receive(message.data)
                    if isinstance(event, StreamStarted):
                        return await self._checked(websocket, event)
                    if isinstance(event, MessageMalformed):
                        logger.warning(f"{name} stream before start: skipped {event.reason.value}")
        except TimeoutError:
            logger.warning(f"a {name} stream sent no start in time; closed")
            await websocket.close(code=_POLICY_VIOLATION, message=b"no start")
        return None

    async def _checked(
        self, websocket: web.WebSocketResponse, started: StreamStarted
    ) -> StreamStarted | None:
        try:
            redeemed = self.tokens.redeem(self.token_of(started), time.time())
            if redeemed.subject and redeemed.subject != started.call_sid[:128]:
                raise CallTokenRejected(
                    "This call token belongs to another call.",
                    reason=CallTokenRejectReason.FORGED,
                )
        except CallTokenRejected as exc:
            logger.warning(
                f"refused {self.provider.value} stream {started.stream_sid}: {exc.reason.value}"
            )
            await websocket.close(
                code=_POLICY_VIOLATION, message=f"token {exc.reason.value}".encode()
            )
            return None
        return started

    def _admit(
        self, websocket: web.WebSocketResponse, stream: MediaStream, started: StreamStarted
    ) -> PhoneCallTransport | None:
        # The serve app imports this module.
        from voxpipe.pipelines.live_call import CallEnd
        from voxpipe.pipelines.simulated_call import Mode

        serve = self.serve
        transport = PhoneCallTransport(
            websocket,
            stream,
            record_audio=serve.config.call.record_dir is not None,
            silent_ms=self.config.silent_ms,
            mark_interval_ms=self.config.mark_interval_ms,
            confirm_within_ms=self.config.confirm_within_ms,
            passthrough=self.config.g711_passthrough and serve.config.call.mode is Mode.REALTIME,
        )
        call_id = uuid.uuid4().hex[:12]

        ours = {CallEnd.PIPELINE_ENDED, CallEnd.MAX_DURATION, CallEnd.SERVER_ENDED}
        rest = self.config.rest_hangup
        hangups: list[str] = []  # at most one (a stopping server may close a call twice)

        async def closed() -> None:
            await close_quietly(websocket)
            if rest is not None and call is not None and call.ended in ours and not hangups:
                hangups.append(started.call_sid)
                await hang_up(rest, started.call_sid)  # voxpipe ended it: the phone call too

        call: LiveCall | None = None
        if not serve.has_room():
            asyncio.get_running_loop().create_task(
                websocket.close(code=_TRY_AGAIN_LATER, message=b"busy")
            )
            return None
        try:
            spec = dataclasses.replace(serve.config.call, echo_guard=self.config.echo_guard)
            call = serve.admit(call_id, transport, closed=closed, spec=spec)
        except VoxpipeError as exc:
            logger.error(f"call {call_id}: could not build its graph: {exc}")
            asyncio.get_running_loop().create_task(
                websocket.close(code=_INTERNAL_ERROR, message=b"call setup failed")
            )
            return None
        logger.info(
            f"call {call_id} answered ({self.provider.value} call {started.call_sid}, "
            f"stream {started.stream_sid}, {started.encoding.value})"
        )
        return transport
