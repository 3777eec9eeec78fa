"""The aiohttp application: WebSocket sessions, secret minting, fault control.

Routes:
- ``GET /v1/realtime?model=...`` (WebSocket) with ``Authorization: Bearer``
  the server key or an unexpired ephemeral secret; anything else is refused
  with 401 before the upgrade.

Limits, all checked before the upgrade unless said: a browser (a request with
an ``Origin`` header) only from ``allowed_origins`` (403: any web page could
otherwise drive a loopback server from a visitor's browser); at most
``max_sessions`` live sessions (503 with ``Retry-After``); with ``overload`` set,
no new session while the event loop runs late (503 ``server_overloaded``: the
overload signal, :mod:`voxpipe.realtime_server.overload`); messages of at most
``MAX_MESSAGE_BYTES`` (16 MiB, above OpenAI's 15 MiB append cap; past it the
socket closes with 1009), never compressed (permessage-deflate let 29 KiB on
the wire inflate to 30 MiB, and spends CPU on base64 audio that does not
compress); a ping every ``heartbeat_s``, so a half-open peer is dropped within
two periods instead of living for the session cap.
- ``GET /v1/realtime?call_id=...`` (WebSocket): a sideband on a WebRTC call, server key only.
- ``POST /v1/realtime/calls`` and ``.../calls/<id>/hangup``: WebRTC calls (:mod:`.call_routes`).
- ``POST /v1/realtime/client_secrets`` mints ephemeral secrets.
- ``POST /v1/_voxpipe/faults`` arms a fault, only when fault injection is on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from loguru import logger

from voxpipe.errors import ConfigError
from voxpipe.realtime_server.conversation import ConversationLimits
from voxpipe.realtime_server.overload import OverloadGuard, OverloadLimits
from voxpipe.realtime_server.protocol_errors import ProtocolError
from voxpipe.realtime_server.rate_limits import RateLimitPolicy
from voxpipe.transports.realtime_server import secrets as secret_store
from voxpipe.transports.realtime_server.brains import Brain, ScriptedBrain
from voxpipe.transports.realtime_server.call_routes import CallRoutes
from voxpipe.transports.realtime_server.driver import (
    BRAIN_DEADLINE_S,
    STT_DEADLINE_S,
    WRITE_STALL_S,
    SessionDriver,
)
from voxpipe.transports.realtime_server.faults import (
    FaultInjector,
    RefuseNextConnection,
    fault_from_json,
)
from voxpipe.transports.realtime_server.vad import SileroBatcher

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_MODEL = "gpt-realtime"
DEFAULT_MAX_SESSIONS = 250
ANY_ORIGIN = "*"
CLOSED_SESSIONS_KEPT = 256


@dataclass(frozen=True)
class ServerConfig:
    """How a realtime server behaves."""

    api_key: str | None = None
    session_max_seconds: float = 3600.0
    fault_injection: bool = False
    rate_limits: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    clock: Callable[[], float] = time.time
    """Wall clock for secret expiry (Unix seconds); tests pass their own."""
    max_sessions: int = DEFAULT_MAX_SESSIONS
    allowed_origins: tuple[str, ...] = ()
    """Web origins (``https://app.example.com``) whose pages may open sessions; ``*`` any."""
    heartbeat_s: float = 20.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    brain_deadline_s: float = BRAIN_DEADLINE_S
    """A brain silent this long between outputs has hung: its response fails."""
    stt_deadline_s: float = STT_DEADLINE_S
    """A transcription taking longer fails (``...transcription.failed``)."""
    write_stall_s: float = WRITE_STALL_S
    """A client that takes no event for this long while events wait is closed with 1008."""
    conversation_limits: ConversationLimits = field(default_factory=ConversationLimits)
    """Audio kept per session (newest first), items and text before the oldest are forgotten."""
    overload: OverloadLimits | None = None
    """Refuse new sessions (503) while the event loop runs this late; None: never.

    Off by default in the library: an embedded server shares its loop with the
    caller's own pipeline (tests, ``voxpipe call``), whose lag is not the server's.
    ``voxpipe realtime-server`` turns it on."""

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be at least 1, not {self.max_sessions}")
        if self.max_message_bytes < 1024:
            raise ConfigError(
                f"max_message_bytes must be at least 1024, not {self.max_message_bytes}"
            )
        if not (self.brain_deadline_s > 0 and self.stt_deadline_s > 0 and self.write_stall_s > 0):
            raise ConfigError("brain_deadline_s, stt_deadline_s and write_stall_s must be above 0")
        if not self.heartbeat_s > 0:
            raise ConfigError(f"heartbeat_s must be above 0, not {self.heartbeat_s}")


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}
    }
    return web.json_response(body, status=status)


SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."


def _bearer(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer``, or from the browser subprotocol form."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Browsers cannot set headers: OpenAI also takes the key as a WebSocket subprotocol.
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(SUBPROTOCOL_KEY_PREFIX):
            return protocol[len(SUBPROTOCOL_KEY_PREFIX) :] or None
    return None


def _key_subprotocols(request: web.Request) -> tuple[str, ...]:
    """The subprotocols carrying a key, so aiohttp never logs them as unknown."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "").split(",")
    return tuple(p.strip() for p in offered if p.strip().startswith(SUBPROTOCOL_KEY_PREFIX))


def _abort(request: web.Request) -> None:
    """Drop the connection at once (a peer that reads nothing cannot be closed politely)."""
    if request.transport is not None:
        request.transport.abort()


def _same_key(offered: str, key: str) -> bool:
    """Compare keys in constant time: how long a refusal takes tells nothing of the key."""
    return hmac.compare_digest(offered.encode(), key.encode())


class RealtimeServer:
    """voxpipe's OpenAI-Realtime-protocol server."""

    def __init__(self, config: ServerConfig | None = None, brain: Brain | None = None) -> None:
        self.config = config or ServerConfig()
        self.brain: Brain = brain or ScriptedBrain()
        self.secrets = secret_store.SecretStore()
        self.faults = FaultInjector(enabled=self.config.fault_injection)
        self.live_sessions: set[SessionDriver] = set()
        # (session id, client messages it received) of the latest closed sessions: a test
        # can see that a session was only opened and closed (a failover's health probe).
        self.closed_sessions: collections.deque[tuple[str, int]] = collections.deque(
            maxlen=CLOSED_SESSIONS_KEPT
        )
        self._upgrading = 0
        self.overload = OverloadGuard(self.config.overload) if self.config.overload else None
        self.vad = SileroBatcher()
        self.calls = CallRoutes(self)
        self.default_model = DEFAULT_MODEL

    def build_app(self) -> web.Application:
        """The aiohttp application serving this server."""
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        if self.overload is not None:
            app.cleanup_ctx.append(self._watch_loop)
        app.router.add_get("/v1/realtime", self._realtime)
        app.router.add_post("/v1/realtime/client_secrets", self._client_secrets)
        self.calls.add_to(app)
        if self.config.fault_injection:
            app.router.add_post("/v1/_voxpipe/faults", self._arm_fault)
        return app

    async def _watch_loop(self, _app: web.Application) -> AsyncIterator[None]:
        """While serving: a short timer whose lateness feeds the overload guard."""
        task = asyncio.create_task(self._sample_lag())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _sample_lag(self) -> None:
        assert self.overload is not None
        guard = self.overload
        loop = asyncio.get_running_loop()
        interval = guard.limits.interval_ms / 1000
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            now = loop.time()
            guard.observe(now * 1000, (now - due) * 1000)

    def overloaded(self) -> bool:
        """Whether admission control refuses a new session now (and counts the refusal)."""
        if self.overload is None:
            return False
        return not self.overload.admit(asyncio.get_running_loop().time() * 1000)

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        """The key a request offers (header or browser subprotocol form)."""
        return _bearer(request)

    def at_capacity(self) -> bool:
        """Whether one more session would pass ``max_sessions``."""
        return len(self.live_sessions) + self._upgrading >= self.config.max_sessions

    def driver_options(self, preconfig: dict[str, Any] | None) -> dict[str, Any]:
        """What every session driver of this server is built with, but its socket and model."""
        return {
            "brain": self.brain,
            "faults": self.faults,
            "session_max_seconds": self.config.session_max_seconds,
            "rate_limits": self.config.rate_limits,
            "vad": self.vad,
            "preconfig": preconfig,
            "brain_deadline_s": self.config.brain_deadline_s,
            "stt_deadline_s": self.config.stt_deadline_s,
            "write_stall_s": self.config.write_stall_s,
            "conversation_limits": self.config.conversation_limits,
        }

    def authorise(
        self, request: web.Request, *, allow_ephemeral: bool
    ) -> tuple[bool, dict[str, Any] | None]:
        """Whether the request's key is the server's or (if allowed) a live ephemeral secret."""
        token = _bearer(request)
        if token is None:
            return False, None
        if token.startswith(secret_store.SECRET_PREFIX):
            secret = self.secrets.lookup(token, self.config.clock()) if allow_ephemeral else None
            return secret is not None, secret.session if secret else None
        return self.config.api_key is None or _same_key(token, self.config.api_key), None

    def origin_allowed(self, request: web.Request) -> bool:
        """A request without ``Origin`` (not a page), or from an allowed origin."""
        origin = request.headers.get("Origin")
        allowed = self.config.allowed_origins
        return origin is None or ANY_ORIGIN in allowed or origin.rstrip("/") in allowed

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_allowed(request):
            origin = request.headers.get("Origin", "")[:200]
            logger.warning("realtime upgrade refused: origin {!r} is not allowed", origin)
            return _error(
                403,
                "This origin may not open realtime sessions on this server.",
                "origin_not_allowed",
            )
        if self.faults.enabled and self.faults.take(RefuseNextConnection):
            return _error(401, "Incorrect API key provided (injected fault).", "invalid_api_key")
        call_id = request.query.get("call_id")
        if call_id is not None:
            return await self.calls.sideband(request, call_id)
        allowed, preconfig = self.authorise(request, allow_ephemeral=True)
        if not allowed:
            return _error(
                401,
                "Incorrect API key provided, or the ephemeral key has expired.",
                "invalid_api_key",
            )
        if request.headers.get("OpenAI-Beta", "").startswith("realtime"):
            return _error(
                400,
                "This server speaks the GA Realtime protocol only; drop the "
                "'OpenAI-Beta: realtime=v1' header and use GA event names.",
                "beta_protocol_unsupported",
            )
        model = request.query.get("model")
        if not model and preconfig:
            model = preconfig.get("model")
        if not model:
            return _error(
                400, "Missing required parameter: 'model'.", "missing_required_parameter", "model"
            )
        if self.at_capacity():
            response = _error(
                503,
                "The server is at its session limit; try again shortly.",
                "server_busy",
            )
            response.headers["Retry-After"] = "1"
            return response
        if self.overloaded():
            assert self.overload is not None
            logger.warning(
                "realtime upgrade refused: event loop {:.0f} ms late (limit {:.0f} ms), "
                "{} live sessions",
                self.overload.lag_ms(asyncio.get_running_loop().time() * 1000) or 0.0,
                self.overload.limits.lag_ms,
                len(self.live_sessions),
            )
            response = _error(
                503,
                "The server is overloaded; try again shortly.",
                "server_overloaded",
            )
            response.headers["Retry-After"] = str(math.ceil(self.overload.limits.window_ms / 1000))
            return response
        # A key offered as a subprotocol is a protocol this server knows, so
        # aiohttp never writes it to the log as one it does not.
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_bytes,
            timeout=2.0,
            autoping=True,
            heartbeat=self.config.heartbeat_s,
            compress=False,
            protocols=("realtime", *_key_subprotocols(request)),
        )
        self._upgrading += 1  # holds its slot through the handshake's await
        try:
            await ws.prepare(request)
        finally:
            self._upgrading -= 1
        driver = SessionDriver(
            ws,
            model=model,
            abort=functools.partial(_abort, request),
            **self.driver_options(preconfig),
        )
        self.live_sessions.add(driver)
        logger.info("realtime session {} opened (model {})", driver.core.session_id, model)
        try:
            await driver.run()
        finally:
            self.live_sessions.discard(driver)
            self.closed_sessions.append((driver.core.session_id, driver.messages_received))
            logger.info("realtime session {} closed", driver.core.session_id)
        return ws

    async def _client_secrets(self, request: web.Request) -> web.Response:
        allowed, _ = self.authorise(request, allow_ephemeral=False)
        if not allowed:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        try:
            minted = secret_store.parse_mint_request(await request.json())
        except ValueError:
            return _error(400, "The body must be a JSON object.", "invalid_json")
        except ProtocolError as error:
            return _error(400, error.message, error.code, error.param)
        try:
            secret = self.secrets.mint(minted.session, minted.seconds, self.config.clock())
        except secret_store.StoreFull as full:
            logger.warning("client secret refused: {}", full)
            return _error(
                429, "Too many unexpired client secrets; try again later.", "rate_limit_exceeded"
            )
        session = {
            **minted.session,
            "object": "realtime.session",
            "id": "sess_" + secrets.token_hex(6),  # nothing of the secret in it
        }
        return web.json_response(
            {"value": secret.value, "expires_at": secret.expires_at, "session": session}
        )

    async def _arm_fault(self, request: web.Request) -> web.Response:
        token = _bearer(request)
        if self.config.api_key is None or not _same_key(token or "", self.config.api_key):
            return _error(401, "Fault control needs the server's API key.", "invalid_api_key")
        try:
            self.faults.arm(fault_from_json(await request.json()))
        except (ValueError, ConfigError) as exc:
            return _error(400, str(exc), "invalid_value")
        return web.json_response({"armed": True})
