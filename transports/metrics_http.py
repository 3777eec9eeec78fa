"""Serve :class:`VoxpipeMetrics` at ``/metrics`` over aiohttp.

Either mount :func:`metrics_handler` on an application the process already
runs, or start a small dedicated server with :func:`start_metrics_server`
(port 0 picks a free port; read it back from ``MetricsServer.port``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from voxpipe.observability.metrics import CONTENT_TYPE, VoxpipeMetrics


def metrics_handler(metrics: VoxpipeMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler answering with the registry in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        # Set the header whole: the exposition type carries a version parameter.
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return handle


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; ``await close()`` stops it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        """The full URL of the metrics endpoint."""
        return f"http://{self.host}:{self.port}/metrics"

    async def close(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


async def start_metrics_server(
    metrics: VoxpipeMetrics, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` until ``close()``."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return MetricsServer(runner, host, int(bound_port))
