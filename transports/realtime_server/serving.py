"""Running the server: in process for tests (an async context manager) or from the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from voxpipe.transports.realtime_server.app import RealtimeServer, ServerConfig
from voxpipe.transports.realtime_server.brains import Brain
from voxpipe.transports.realtime_server.faults import Fault, FaultInjector
from voxpipe.transports.webrtc.ice import gather_on_loopback, is_loopback_host


@dataclass(frozen=True)
class RunningServer:
    """A server listening on loopback, as tests see it."""

    host: str
    port: int
    api_key: str | None
    server: RealtimeServer
    tls: bool = False

    @property
    def http_base_url(self) -> str:
        """``http://host:port/v1`` (the SDK's ``base_url``)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/v1"

    @property
    def ws_base_url(self) -> str:
        """``ws://host:port/v1`` (the SDK's ``websocket_base_url``)."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/v1"

    @property
    def realtime_url(self) -> str:
        """``ws://host:port/v1/realtime`` (pipecat's ``base_url``)."""
        return f"{self.ws_base_url}/realtime"

    @property
    def faults(self) -> FaultInjector:
        """Arm faults here (only if started with ``fault_injection=True``)."""
        return self.server.faults

    def arm(self, fault: Fault) -> None:
        """Shorthand for ``faults.arm(fault)``."""
        self.server.faults.arm(fault)


@contextlib.asynccontextmanager
async def running_realtime_server(
    *,
    brain: Brain | None = None,
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[RunningServer]:
    """Start a realtime server (port 0: any free port), yield it, stop it.

    Example::

        async with running_realtime_server(config=ServerConfig(api_key="k")) as srv:
            client = AsyncOpenAI(api_key="k", base_url=srv.http_base_url,
                                 websocket_base_url=srv.ws_base_url)
    """
    server = RealtimeServer(config, brain)
    if is_loopback_host(host):
        gather_on_loopback(True)  # WebRTC calls on loopback: peers offer 127.0.0.1 (aioice won't)
    runner = web.AppRunner(server.build_app(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr, attr-defined]
    bound = sockets[0].getsockname()[1] if sockets else port
    try:
        yield RunningServer(host, bound, server.config.api_key, server, tls=tls is not None)
    finally:
        await runner.cleanup()


async def serve_forever(
    server: RealtimeServer,
    host: str,
    port: int,
    *,
    banner: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve until cancelled (the CLI's main loop); prints ``banner`` once listening."""
    if is_loopback_host(host):
        gather_on_loopback(True)  # WebRTC calls on loopback: aioice leaves 127.0.0.1 out
    runner = web.AppRunner(server.build_app(), shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    if banner:
        print(banner, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
