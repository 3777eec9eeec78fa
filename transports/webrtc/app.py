"""``voxpipe serve``: an aiohttp app where a browser talks to a voxpipe call over WebRTC.

Routes:

- ``GET /``: the page (plain HTML and JS, served from the package); ``/?autostart=1``
  starts the call at once.
- ``GET /api/config``: what the page needs to connect (its ICE servers).
- ``POST /api/offer``: ``{"sdp", "type": "offer", "token"?}`` in; the SDP answer,
  the peer connection id and the call id out. One voxpipe call per peer
  connection, with the same graph, guardrails, timeline and report as
  ``voxpipe call`` (:class:`~voxpipe.pipelines.live_call.LiveCall`).
- ``GET /healthz``: ``{"ok": true, "calls": N}``.

The browser never holds a provider key: the server owns the model connection
(the embedded Realtime server by default, OpenAI with a key) and its policy.
A refused offer is a clear HTTP error and leaves no call behind: an offer too
large (413), not JSON or not SDP we can answer (400, naming what is wrong),
without a valid call token when one is required (401), beyond
``max_calls`` (503 ``busy``), or, with ``ServeConfig.overload`` set, while the
event loop runs late (503 ``overloaded``: a new call is refused rather than the
live ones degraded; phone routes refuse the same way through ``has_room``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from loguru import logger
from pipecat.observers.base_observer import BaseObserver
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from voxpipe.errors import CallTokenRejected, OfferRejected, VoxpipeError
from voxpipe.pipelines.live_call import CallEnd, LiveCall, LiveCallSpec, LiveTransport
from voxpipe.realtime_server.overload import OverloadGuard, OverloadLimits
from voxpipe.transports.loop_lag import loop_now_ms, watch_while_serving
from voxpipe.transports.telephony.plivo_routes import PlivoConfig, add_plivo_routes
from voxpipe.transports.telephony.routes import TwilioConfig, add_twilio_routes
from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig, add_telnyx_routes
from voxpipe.transports.webrtc.captions import PageCaptions
from voxpipe.transports.webrtc.direct import DirectCalls, DirectConfig
from voxpipe.transports.webrtc.ice import gather_on_loopback, is_loopback_host
from voxpipe.transports.webrtc.transport import WebRTCCallTransport
from voxpipe.webrtc.call_tokens import CallTokens, ResumeTokens, server_secret
from voxpipe.webrtc.offer import CandidatePolicy, check_offer

PAGE_DIR = Path(__file__).resolve().parent / "page"
SHUTDOWN_S = 5.0


@dataclass
class ServeConfig:
    """How ``voxpipe serve`` takes calls.

    ``call_tokens`` set means an offer must carry a valid single-use token
    (required beyond loopback); ``ice_servers`` are STUN/TURN URLs for the
    page and the server (none on loopback).
    """

    host: str = "127.0.0.1"
    call: LiveCallSpec = field(default_factory=LiveCallSpec)
    ice_servers: list[str] = field(default_factory=list)
    max_calls: int = 8
    max_offer_bytes: int = 16 * 1024
    call_tokens: CallTokens | None = None
    silent_ms: int = 5_000  # a browser not heard from this long is gone
    connect_timeout_ms: int = 10_000  # an answered peer that never connects holds no call
    twilio: TwilioConfig | None = None  # set: phone calls through Twilio Media Streams too
    telnyx: TelnyxConfig | None = None  # ... through Telnyx media streaming
    plivo: PlivoConfig | None = None  # ... through Plivo audio streams
    direct: DirectConfig | None = None  # set: the page may call the provider directly (--direct)
    overload: OverloadLimits | None = None  # set: no new call while the loop runs this late


@dataclass
class _Call:
    call: LiveCall
    task: asyncio.Task[CallEnd]
    closed: Callable[[], Coroutine[Any, Any, None]]  # let the caller's connection go, once ended


class ServeApp:
    """The calls one ``voxpipe serve`` process holds, and its routes."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.loopback = is_loopback_host(config.host)
        self.policy = CandidatePolicy.for_host(config.host)
        self.calls: dict[str, _Call] = {}
        self.ended: list[tuple[str, CallEnd]] = []  # the latest calls' ends, for /healthz
        self.resume_tokens = ResumeTokens(server_secret().value)
        gather_on_loopback(self.loopback)
        self.direct = DirectCalls(config.direct) if config.direct is not None else None
        self.overload = OverloadGuard(config.overload) if config.overload is not None else None

    def build_app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self.config.max_offer_bytes + 4096)
        if self.overload is not None:
            app.cleanup_ctx.append(watch_while_serving(self.overload))
        app.router.add_get("/", self._page)
        app.router.add_get("/api/config", self._client_config)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_static("/static/", PAGE_DIR, show_index=False)
        if self.config.twilio is not None:
            add_twilio_routes(app, self, self.config.twilio)
        if self.config.telnyx is not None:
            add_telnyx_routes(app, self, self.config.telnyx)
        if self.config.plivo is not None:
            add_plivo_routes(app, self, self.config.plivo)
        if self.direct is not None:
            self.direct.add_to(app)
        app.on_shutdown.append(self._shutdown)
        return app

    # -- routes ------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def _client_config(self, request: web.Request) -> web.Response:
        servers = [{"urls": url} for url in self.config.ice_servers]
        return web.json_response(
            {
                "iceServers": servers,
                "tokenRequired": self._tokens_required,
                "direct": self.direct is not None,
            }
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        ended = [{"call_id": call_id, "end": end.value} for call_id, end in self.ended[-20:]]
        return web.json_response({"ok": True, "calls": len(self.calls), "ended": ended})

    async def _offer(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self.config.max_offer_bytes:
            return _refuse(413, "offer_too_large", "The offer is larger than this server takes.")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
            return _refuse(400, "invalid_json", "The offer must be a JSON object.")
        if not isinstance(body, dict) or body.get("type") != "offer":
            return _refuse(400, "not_an_offer", 'Send {"sdp": ..., "type": "offer"}.')
        sdp = body.get("sdp")
        if not isinstance(sdp, str):
            return _refuse(400, "not_an_offer", "The offer has no SDP text.")
        resume = body.get("resume")
        if resume is None:
            if (refused := self._check_token(body.get("token"))) is not None:
                return refused
            if self.overloaded():
                return _refuse(503, "overloaded", "This server is overloaded; try again shortly.")
            if not self.has_room():
                return _refuse(503, "busy", "This server is taking all the calls it can.")
        try:
            accepted = check_offer(sdp, policy=self.policy, max_bytes=self.config.max_offer_bytes)
        except OfferRejected as exc:
            return _refuse(400, f"bad_offer:{exc.reason.value}", str(exc))
        if resume is not None:
            return await self._rejoin(resume, accepted.sdp)
        return await self._answer(accepted.sdp)

    # -- calls -------------------------------------------------------------------

    @property
    def _tokens_required(self) -> bool:
        return self.config.call_tokens is not None

    def _check_token(self, token: Any) -> web.Response | None:
        tokens = self.config.call_tokens
        if tokens is None:
            return None
        if not isinstance(token, str):
            return _refuse(401, "token_required", "This server takes calls with a call token only.")
        try:
            tokens.redeem(token, _wall_s())
        except CallTokenRejected as exc:
            return _refuse(401, f"token_{exc.reason.value}", str(exc))
        return None

    async def _answer(self, sdp: str) -> web.Response:
        connection = SmallWebRTCConnection(ice_servers=list(self.config.ice_servers))
        try:
            await connection.initialize(sdp=sdp, type="offer")
        except Exception as exc:  # aiortc's own refusal of an offer that passed our checks
            await connection.disconnect()
            return _refuse(400, "bad_offer", f"The offer could not be answered: {exc}")
        call_id = uuid.uuid4().hex[:12]
        transport = WebRTCCallTransport(
            connection,
            record_audio=self.config.call.record_dir is not None,
            silent_ms=self.config.silent_ms,
            connect_timeout_ms=self.config.connect_timeout_ms,
        )
        # The page is whatever connection the call has now (a rejoin replaces it).
        captions = PageCaptions(lambda message: transport.connection.send_app_message(message))

        async def closed() -> None:
            with contextlib.suppress(Exception):  # the channel may be gone with the peer
                transport.connection.send_app_message({"type": "event", "name": "call_ended"})
            await transport.connection.disconnect()

        try:
            call = self.admit(call_id, transport, observers=[captions], closed=closed)
        except VoxpipeError as exc:
            await connection.disconnect()
            logger.error(f"call {call_id}: could not build its graph: {exc}")
            return _refuse(500, "call_setup_failed", "The server could not set up the call.")
        self._watch(transport, call)
        answer = connection.get_answer()
        logger.info(f"call {call_id} answered (peer connection {answer['pc_id']})")
        resume = self.resume_tokens.mint(call_id, _wall_s())
        return web.json_response({**answer, "call_id": call_id, "resume": resume})

    async def _rejoin(self, token: Any, sdp: str) -> web.Response:
        """The caller's new peer connection (a network switch) rejoins its live call."""
        try:
            call_id = self.resume_tokens.redeem(token, _wall_s())
        except CallTokenRejected as exc:
            return _refuse(401, f"resume_{exc.reason.value}", str(exc))
        entry = self.calls.get(call_id)
        transport = entry.call.transport if entry is not None else None
        if entry is None or not isinstance(transport, WebRTCCallTransport):
            return _refuse(410, "call_ended", "That call has ended; start a new one.")
        connection = SmallWebRTCConnection(ice_servers=list(self.config.ice_servers))
        try:
            await connection.initialize(sdp=sdp, type="offer")
        except Exception as exc:  # aiortc's own refusal of an offer that passed our checks
            await connection.disconnect()
            return _refuse(400, "bad_offer", f"The offer could not be answered: {exc}")
        await transport.rejoin(connection)
        entry.call.transport_rejoined(transport.rejoins)
        if (metrics := self.config.call.metrics) is not None:
            metrics.record_ice_restart()
        answer = connection.get_answer()
        logger.info(f"call {call_id} rejoined (peer connection {answer['pc_id']})")
        resume = self.resume_tokens.mint(call_id, _wall_s())
        return web.json_response({**answer, "call_id": call_id, "resume": resume})

    def _watch(self, transport: WebRTCCallTransport, call: LiveCall) -> None:
        @transport.event_handler("on_client_connected")
        async def _connected(_transport: Any, _connection: Any) -> None:
            transport.peer_connected()

        @transport.event_handler("on_client_disconnected")
        async def _disconnected(_transport: Any, _connection: Any) -> None:
            # Closed without a hang-up: maybe a network switch, so the caller has
            # the liveness timeout to rejoin; a rejoin's own close of the old one is no news.
            if not transport.rejoining:
                transport.liveness.heard(transport.now_ms())

        @transport.event_handler("on_app_message")
        async def _message(_transport: Any, message: Any, _sender: Any) -> None:
            transport.heard(transport.now_ms())
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "playout":
                transport.playout_reported(message)
            elif kind == "hangup":
                call.hang_up()

    def has_room(self) -> bool:
        """Whether one more call fits: under ``max_calls``, and the loop not overloaded."""
        return len(self.calls) < self.config.max_calls and not self.overloaded()

    def overloaded(self) -> bool:
        """Admission control on the overload signal (a refusal is counted by the guard)."""
        return self.overload is not None and not self.overload.admit(loop_now_ms())

    def admit(
        self,
        call_id: str,
        transport: LiveTransport,
        *,
        observers: Sequence[BaseObserver] = (),
        closed: Callable[[], Coroutine[Any, Any, None]],
        spec: LiveCallSpec | None = None,
    ) -> LiveCall:
        """Run one caller's call on ``transport`` (any live transport: a browser, a phone).

        ``closed`` lets the caller's connection go once the call has ended;
        ``spec`` replaces the server's call spec for this call (a phone route's echo guard).
        Raises the :class:`~voxpipe.errors.VoxpipeError` of a graph that cannot be built.
        """
        call = LiveCall(call_id, transport, spec or self.config.call, observers=observers)
        task = asyncio.create_task(call.run(), name=f"voxpipe-call-{call_id}")
        self.calls[call_id] = _Call(call, task, closed)
        task.add_done_callback(lambda t: self._forget(call_id, t))
        return call

    def _forget(self, call_id: str, task: asyncio.Task[CallEnd]) -> None:
        entry = self.calls.pop(call_id, None)
        self.resume_tokens.forget(call_id)
        end = CallEnd.SERVER_ENDED
        if not task.cancelled() and task.exception() is None:
            end = task.result()
        elif not task.cancelled():
            logger.error(f"call {call_id} failed: {task.exception()!r}")
        self.ended.append((call_id, end))
        del self.ended[:-100]
        if entry is not None:
            asyncio.get_running_loop().create_task(entry.closed())

    async def _shutdown(self, app: web.Application) -> None:
        await self.stop()

    async def stop(self) -> None:
        """End every call (and drop never-connected peers) within ``SHUTDOWN_S``."""
        entries = list(self.calls.values())
        for entry in entries:
            entry.call.end()
        tasks = [entry.task for entry in entries]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_S)
            for task in pending:
                task.cancel()
        for entry in entries:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(entry.closed(), 1.0)


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _wall_s() -> float:
    return time.time()


@dataclass(frozen=True)
class RunningServe:
    """A serving ``voxpipe serve``: its base URL and its calls."""

    url: str
    app: ServeApp


@contextlib.asynccontextmanager
async def running_serve(
    config: ServeConfig, *, port: int = 0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RunningServe]:
    """Serve ``config`` on ``config.host``:``port`` (0: a free port) until the context ends."""
    serve = ServeApp(config)
    runner = web.AppRunner(serve.build_app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, port, ssl_context=tls)
    await site.start()
    bound = runner.addresses[0][1]
    scheme = "https" if tls is not None else "http"
    try:
        yield RunningServe(f"{scheme}://{config.host}:{bound}", serve)
    finally:
        await runner.cleanup()
