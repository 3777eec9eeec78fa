"""OpenAI's WebRTC call routes on the embedded server.

- ``POST /v1/realtime/calls``: the SDP offer in (``application/sdp``, or
  ``multipart/form-data`` with ``sdp`` and an optional ``session`` JSON part,
  as the openai SDK sends it), authorised by an ephemeral ``ek_`` secret
  (whose session configuration the call starts with) or the server's key;
  ``201`` with the SDP answer and ``Location: /v1/realtime/calls/<call_id>``.
- ``GET /v1/realtime?call_id=<call_id>`` (WebSocket, :meth:`CallRoutes.sideband`):
  the sideband, with the server's key only. An ephemeral secret, an unknown or
  ended call id, or the id of a WebSocket session is refused before the
  upgrade with 404 ``call_id_not_found``, as users report OpenAI does for an
  ephemeral key. No ``session.created`` is sent on attach (OpenAI sends none
  for an existing call); every later event is.
- ``POST /v1/realtime/calls/<call_id>/hangup`` (server key): ends the call,
  its media and every sideband.
- ``OPTIONS /v1/realtime/calls``: the CORS preflight of a page on an allowed
  origin (``--allow-origin``), which needs ``Authorization`` and reads ``Location``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from loguru import logger

from voxpipe.errors import OfferRejected
from voxpipe.realtime_server.protocol_errors import ProtocolError
from voxpipe.transports.realtime_server import secrets as secret_store
from voxpipe.transports.realtime_server.calls import EVENTS_CHANNEL, CallDriver, CallEvents
from voxpipe.transports.webrtc.ice import gather_on_loopback, is_loopback_host
from voxpipe.webrtc.offer import CandidatePolicy, check_offer

if TYPE_CHECKING:
    from voxpipe.transports.realtime_server.app import RealtimeServer

CALL_ID_PREFIX = "rtc_"
MAX_OFFER_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 20.0  # an answered call whose peer never connects is dropped


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}
    }
    return web.json_response(body, status=status)


def _not_found() -> web.Response:
    return _error(404, "No session found for the provided call_id.", "call_id_not_found")


class CallRoutes:
    """The call endpoints of one :class:`~.app.RealtimeServer`, and its live calls."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        self.calls: dict[str, CallDriver] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add_to(self, app: web.Application) -> None:
        """Register the routes (the sideband shares ``GET /v1/realtime``)."""
        app.router.add_post("/v1/realtime/calls", self.create)
        app.router.add_route("OPTIONS", "/v1/realtime/calls", self.preflight)
        app.router.add_post("/v1/realtime/calls/{call_id}/hangup", self.hangup)
        app.on_shutdown.append(self._shutdown)

    # -- CORS -------------------------------------------------------------------

    def _cors(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and self.server.origin_allowed(request):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Location"
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """A page's preflight: allowed origins may POST an offer with a bearer secret."""
        if not self.server.origin_allowed(request):
            return _error(403, "This origin may not start calls.", "origin_not_allowed")
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        return self._cors(request, response)

    # -- create -----------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        """Answer an offer: a new call, its session configured by the secret or the request."""
        return self._cors(request, await self._create(request))

    async def _create(self, request: web.Request) -> web.Response:
        server = self.server
        if not server.origin_allowed(request):
            return _error(403, "This origin may not start calls.", "origin_not_allowed")
        allowed, preconfig = server.authorise(request, allow_ephemeral=True)
        if not allowed:
            return _error(
                401,
                "Incorrect API key provided, or the ephemeral key has expired.",
                "invalid_api_key",
            )
        try:
            sdp, session = await _read_offer(request)
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request")
        if session is not None:
            try:
                session = secret_store.parse_mint_request({"session": session}).session
            except ProtocolError as error:
                return _error(400, error.message, error.code, error.param)
            preconfig = {**(preconfig or {}), **session}
        if server.at_capacity():
            response = _error(503, "The server is at its session limit.", "server_busy")
            response.headers["Retry-After"] = "1"
            return response
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = sockname[0] if sockname else "127.0.0.1"
        policy = CandidatePolicy.for_host(host)
        try:
            accepted = check_offer(sdp, policy=policy, max_bytes=MAX_OFFER_BYTES)
        except OfferRejected as exc:
            return _error(400, str(exc), "invalid_offer", "sdp")
        if is_loopback_host(host):
            gather_on_loopback(True)  # aioice leaves 127.0.0.1 out on its own
        call_id = CALL_ID_PREFIX + secrets.token_hex(12)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        events = CallEvents()
        model = (preconfig or {}).get("model") or server.default_model
        driver = CallDriver(call_id, events, pc, model=model, **server.driver_options(preconfig))
        pc.addTrack(driver.track)

        @pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if channel.label == EVENTS_CHANNEL:
                events.attach_channel(channel)

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "audio":
                driver.hear(track)

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                logger.info("call {}: peer connection {}", call_id, pc.connectionState)
                await events.close(code=1000, message=b"peer connection " + b"closed")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(accepted.sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc's own refusal of an offer that passed the checks
            await pc.close()
            return _error(400, f"The offer could not be answered: {exc}", "invalid_offer", "sdp")
        self.calls[call_id] = driver
        task = asyncio.create_task(self._run(driver))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("realtime call {} answered (model {})", call_id, model)
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    async def _run(self, driver: CallDriver) -> None:
        server = self.server
        server.live_sessions.add(driver)
        watchdog = asyncio.create_task(self._connect_watchdog(driver))
        try:
            await driver.run()
        finally:
            watchdog.cancel()
            await driver.events.close()
            await driver.end()
            self.calls.pop(driver.call_id, None)
            server.live_sessions.discard(driver)
            server.closed_sessions.append((driver.core.session_id, driver.messages_received))
            logger.info("realtime call {} ended", driver.call_id)

    async def _connect_watchdog(self, driver: CallDriver) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if driver.pc.connectionState != "connected":
            logger.warning("call {}: the peer never connected; ending it", driver.call_id)
            await driver.events.close(code=1000, message=b"peer never connected")

    # -- sideband and hang-up ------------------------------------------------------

    def _server_key_only(self, request: web.Request) -> bool:
        token = self.server.bearer(request)
        if token is None or token.startswith(secret_store.SECRET_PREFIX):
            return False
        allowed, _ = self.server.authorise(request, allow_ephemeral=False)
        return allowed

    async def sideband(self, request: web.Request, call_id: str) -> web.StreamResponse:
        """Attach a server's WebSocket to a live call: the same events, both ways."""
        if not self._server_key_only(request):
            # An ephemeral secret gets what users report from OpenAI: the call is not found.
            if (self.server.bearer(request) or "").startswith(secret_store.SECRET_PREFIX):
                return _not_found()
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        driver = self.calls.get(call_id)
        if driver is None or driver.events.closed:
            return _not_found()
        ws = web.WebSocketResponse(
            max_msg_size=self.server.config.max_message_bytes,
            heartbeat=self.server.config.heartbeat_s,
            compress=False,
            protocols=("realtime",),
        )
        await ws.prepare(request)
        driver.events.sidebands.add(ws)
        logger.info("realtime call {}: sideband attached", call_id)
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    driver.events.received(message.data)
                else:
                    break
        finally:
            if driver.events.closed:  # the call ended: its close handshake is under way
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(driver.events.sidebands_closed.wait(), 5.0)
            driver.events.sidebands.discard(ws)
            logger.info("realtime call {}: sideband detached", call_id)
        return ws

    async def hangup(self, request: web.Request) -> web.Response:
        """End a call: its media, its session and its sidebands."""
        if not self._server_key_only(request):
            return _error(401, "Hanging up a call needs the server's API key.", "invalid_api_key")
        driver = self.calls.get(request.match_info["call_id"])
        if driver is None or driver.events.closed:
            return _not_found()
        await driver.events.close(code=1000, message=b"call hung up")
        return web.Response(status=200)

    async def _shutdown(self, app: web.Application) -> None:
        for driver in list(self.calls.values()):
            await driver.events.close(code=1001, message=b"server shutting down")
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._tasks), timeout=3.0)


async def _read_offer(request: web.Request) -> tuple[str, dict[str, Any] | None]:
    """The offer's SDP and the optional session, from either body form OpenAI takes."""
    if request.content_type == "multipart/form-data":
        form = await request.post()
        sdp_text = _form_text(form.get("sdp"))
        if sdp_text is None:
            raise ValueError("The form has no 'sdp' part.")
        raw = _form_text(form.get("session"))
        if raw is None:
            return sdp_text, None
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("The 'session' part must be JSON.") from None
        if not isinstance(parsed, dict):
            raise ValueError("The 'session' part must be a JSON object.")
        return sdp_text, parsed
    if request.content_type in ("application/sdp", "text/plain"):
        if (request.content_length or 0) > MAX_OFFER_BYTES:
            raise ValueError(f"The offer must be at most {MAX_OFFER_BYTES} bytes.")
        return await request.text(), None
    raise ValueError("Send the SDP offer as application/sdp or multipart/form-data.")


def _form_text(value: object) -> str | None:
    """A form part as text, whether it came as a field or as a file part."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    file = getattr(value, "file", None)
    return file.read().decode() if file is not None else None
