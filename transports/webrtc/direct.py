"""``voxpipe serve --direct``: the page talks to the provider, voxpipe runs the call's controls.

The lowest-latency browser path keeps WebRTC at the edge: the page connects
straight to the Realtime provider (OpenAI, or the embedded server offline)
with a short-lived secret, and voxpipe attaches to the same session over the
sideband WebSocket, where it answers tools, trips guardrails and keeps the
timeline, cost and report (:class:`~voxpipe.call.sideband.SidebandControl`);
no audio passes through voxpipe.

Routes (added to ``voxpipe serve``'s app):

- ``POST /api/direct/secret``: an ``ek_`` secret bound to the agent's
  session configuration (instructions, tool schemas, voice), valid
  ``secret_ttl_s`` (60-300 s), plus the provider's calls URL. voxpipe keeps
  one ready (:class:`~voxpipe.transports.tokens.EphemeralTokenProvider`) and
  mints the next 30 s before it expires, so a page's call or reconnect never
  waits for minting and never gets a secret about to lapse.
- ``POST /api/direct/calls`` ``{"call_id": "rtc_...", "previous"?: "rtc_..."}``:
  the page's call id, from the provider's ``Location``; voxpipe opens the
  sideband with its own key (the sideband takes no ephemeral secret). 404 if
  the provider knows no such call. ``previous``: the call this one replaces
  (the page reconnected with a fresh secret); the new session is seeded with
  the summary of what was said on it.
- ``GET /api/direct/calls/<call_id>``: the call's report so far.

The sideband reconnects on its own blips (an abnormal close) without touching
the page's media; a 404 on reconnect means the call is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from loguru import logger

from voxpipe.call.sideband import RunTool, SendEvent, SidebandCommand, SidebandControl
from voxpipe.errors import ConfigError, FatalProviderError, TokenRotationError
from voxpipe.guardrails.policy import IncrementalScanner
from voxpipe.transports.tokens import EphemeralTokenProvider, wall_clock_ms

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]
MIN_TTL_S, MAX_TTL_S = 60, 300
RECONNECTS = 5  # tries per blip
CALL_ID = re.compile(r"rtc_[A-Za-z0-9_-]{4,128}")


@dataclass
class DirectConfig:
    """Where the provider is and what voxpipe does on its direct calls."""

    provider_http: str
    """``http(s)://host/v1``: secrets and the page's ``/realtime/calls``."""
    provider_ws: str
    """``ws(s)://host/v1``: the sideband."""
    api_key: str | None
    session: dict[str, Any] = field(default_factory=lambda: {"type": "realtime"})
    """The session the secret is bound to (``model``, ``instructions``, ``tools`` schemas...)."""
    tools: Mapping[str, ToolHandler] = field(default_factory=dict)
    """Server-side tool handlers by name: the page never sees them."""
    policies: Sequence[IncrementalScanner] = ()
    secret_ttl_s: int = 120
    record_dir: Path | None = None
    clock_ms: Callable[[], int] = wall_clock_ms
    """Epoch ms, for the secrets' expiry (tests pass the provider's clock)."""

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError(
                "direct mode needs the provider's server key",
                hint="set OPENAI_API_KEY: it mints the page's secrets and opens the sideband",
            )
        if not MIN_TTL_S <= self.secret_ttl_s <= MAX_TTL_S:
            raise ConfigError(
                f"secret_ttl_s must be {MIN_TTL_S} to {MAX_TTL_S} s, not {self.secret_ttl_s}"
            )


class SidebandCall:
    """One direct call's sideband: reads its events, carries out the control's commands."""

    def __init__(self, config: DirectConfig, call_id: str, seed: Sequence[SendEvent] = ()) -> None:
        self.config = config
        self.call_id = call_id
        self.seed = list(seed)
        self.control = SidebandControl(
            tools=frozenset(config.tools),
            policies=config.policies,
            model=str(config.session.get("model", "gpt-realtime")),
        )
        self._start = time.monotonic()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tools: set[asyncio.Task[None]] = set()
        self.ended = asyncio.Event()
        self.reconnects = 0

    def now_ms(self) -> float:
        return (time.monotonic() - self._start) * 1000

    async def open(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        """Connect the sideband; ``WSServerHandshakeError`` (404: no such call) propagates."""
        url = f"{self.config.provider_ws}/realtime?call_id={self.call_id}"
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        return await http.ws_connect(url, headers=headers, heartbeat=20.0)

    async def run(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Serve the call until the provider ends it; reconnect on a blip."""
        self.control.attached(self.now_ms(), self.call_id)
        current: aiohttp.ClientWebSocketResponse | None = ws
        self._ws = ws
        try:
            await self._carry_out(self.seed)
            while current is not None:
                self._ws = current
                await self._read(current)
                if current.close_code in (1000, 1001):
                    return  # the call ended (or the provider is going away)
                current = await self._reconnect(http)
        finally:
            for task in list(self._tools):
                task.cancel()
            self.ended.set()
            self._write_record()

    async def _reconnect(
        self, http: aiohttp.ClientSession
    ) -> aiohttp.ClientWebSocketResponse | None:
        """Up to ``RECONNECTS`` tries per blip, backing off; None when the call is over."""
        for attempt in range(1, RECONNECTS + 1):
            await asyncio.sleep(0.2 * 2**attempt)
            try:
                ws = await self.open(http)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 404:
                    return None  # the call is over
                continue
            except aiohttp.ClientError:
                continue
            self.reconnects += 1
            logger.info("direct call {}: sideband reconnected", self.call_id)
            self.control.reconnected(self.now_ms(), attempt)
            return ws
        logger.error("direct call {}: the sideband could not reconnect", self.call_id)
        return None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            try:
                event = json.loads(message.data)
            except json.JSONDecodeError:
                continue
            await self._carry_out(self.control.on_event(event, self.now_ms()))

    async def _carry_out(self, commands: Sequence[SidebandCommand]) -> None:
        for command in commands:
            if isinstance(command, SendEvent):
                await self.send(command.event)
            elif isinstance(command, RunTool):
                task = asyncio.create_task(self._run_tool(command))
                self._tools.add(task)
                task.add_done_callback(self._tools.discard)

    async def send(self, event: dict[str, Any]) -> None:
        """A client event on the sideband (dropped while it reconnects)."""
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps(event))

    async def _run_tool(self, call: RunTool) -> None:
        handler = self.config.tools[call.name]
        try:
            arguments = json.loads(call.arguments or "{}")
            result = await handler(arguments if isinstance(arguments, dict) else {})
            output = result if isinstance(result, str) else json.dumps(result)
        except Exception as exc:  # the model hears that the tool failed, not its traceback
            logger.exception("direct call {}: tool {} failed", self.call_id, call.name)
            output = json.dumps({"error": f"{call.name} failed: {type(exc).__name__}"})
        await self._carry_out(
            self.control.tool_finished(call.call_id, call.name, output, self.now_ms())
        )

    def _write_record(self) -> None:
        if self.config.record_dir is None:
            return
        folder = self.config.record_dir / self.call_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "timeline.jsonl").write_text(self.control.timeline.jsonl())
        (folder / "report.json").write_text(json.dumps(self.control.report(), indent=2))


class DirectCalls:
    """The direct-mode routes of ``voxpipe serve`` and the sidebands they opened."""

    def __init__(self, config: DirectConfig) -> None:
        self.config = config
        self.calls: dict[str, SidebandCall] = {}
        self.secrets: EphemeralTokenProvider | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/direct/secret", self.secret)
        app.router.add_post("/api/direct/calls", self.attach)
        app.router.add_get("/api/direct/calls/{call_id}", self.report)
        app.on_shutdown.append(self._shutdown)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _secrets(self) -> EphemeralTokenProvider:
        if self.secrets is None:
            self.secrets = EphemeralTokenProvider(
                f"{self.config.provider_http}/realtime/client_secrets",
                self.config.api_key or "",
                self.config.secret_ttl_s,
                session_config=self.config.session,
                http=self._session(),
                clock_ms=self.config.clock_ms,
            )
            await self.secrets.start()  # the first mint, and the refresh ahead of expiry
        return self.secrets

    async def secret(self, request: web.Request) -> web.Response:
        """A short-lived secret for the page, bound to the agent's session, with more than the
        refresh margin (30 s) left; while minting fails, the current one if it has not expired."""
        try:
            provider = await self._secrets()
            minted = await provider.fresh()
        except FatalProviderError as exc:
            logger.error("direct: the provider refused a secret: {}", exc.message)
            return web.json_response({"error": "secret_refused"}, status=502)
        except TokenRotationError as exc:
            still = self.secrets.policy.usable(self.config.clock_ms()) if self.secrets else None
            if still is None:
                logger.error("direct: no secret from the provider: {}", exc.message)
                return web.json_response({"error": "provider_unreachable"}, status=502)
            logger.warning("direct: minting failed, the current secret goes: {}", exc.message)
            minted = still
        expires_at = None if minted.expires_at_ms is None else minted.expires_at_ms // 1000
        return web.json_response(
            {
                "value": minted.value,
                "expires_at": expires_at,
                "calls_url": f"{self.config.provider_http}/realtime/calls",
            }
        )

    async def attach(self, request: web.Request) -> web.Response:
        """The page's call id: open the sideband on it."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid_json"}, status=400)
        call_id = body.get("call_id") if isinstance(body, dict) else None
        if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
            return web.json_response({"error": "invalid_call_id"}, status=400)
        if call_id in self.calls:
            return web.json_response({"call_id": call_id, "attached": True})
        previous = self.calls.get(str(body.get("previous") or ""))
        seed: list[SendEvent] = []
        if previous is not None:  # the page's new call carries the old one's conversation on
            base = str(self.config.session.get("instructions") or "")
            seed = previous.control.seed(base, previous.now_ms())
        call = SidebandCall(self.config, call_id, seed)
        try:
            ws = await call.open(self._session())
        except aiohttp.WSServerHandshakeError as exc:
            status = 404 if exc.status == 404 else 502
            return web.json_response({"error": "call_not_found"}, status=status)
        except aiohttp.ClientError as exc:
            logger.error("direct call {}: no sideband: {!r}", call_id, exc)
            return web.json_response({"error": "provider_unreachable"}, status=502)
        self.calls[call_id] = call
        task = asyncio.create_task(call.run(self._session(), ws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("direct call {}: sideband attached", call_id)
        return web.json_response({"call_id": call_id, "attached": True, "seeded": bool(seed)})

    async def report(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["call_id"])
        if call is None:
            return web.json_response({"error": "unknown_call"}, status=404)
        return web.json_response({**call.control.report(), "ended": call.ended.is_set()})

    async def _shutdown(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._tasks), timeout=2.0)
        if self.secrets is not None:
            await self.secrets.aclose()
        if self._http is not None:
            await self._http.close()
