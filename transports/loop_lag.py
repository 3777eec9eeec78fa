"""The overload signal's timer: how late a short sleep wakes on this event loop.

The I/O half of :mod:`voxpipe.realtime_server.overload`: a task that sleeps
``interval_ms`` again and again and feeds each wake-up's lateness to the guard,
for as long as an aiohttp application serves (``app.cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from voxpipe.realtime_server.overload import OverloadGuard


def loop_now_ms() -> float:
    """The running loop's clock, in ms (the guard's time)."""
    return asyncio.get_running_loop().time() * 1000


async def sample_loop_lag(guard: OverloadGuard) -> None:
    """Feed ``guard`` the lateness of a ``interval_ms`` timer until cancelled."""
    loop = asyncio.get_running_loop()
    interval = guard.limits.interval_ms / 1000
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        now = loop.time()
        guard.observe(now * 1000, (now - due) * 1000)


def watch_while_serving(
    guard: OverloadGuard,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An ``app.cleanup_ctx`` entry that samples the loop's lag while the app serves."""

    async def watch(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sample_loop_lag(guard), name="voxpipe-loop-lag")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch
