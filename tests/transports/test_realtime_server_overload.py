"""Admission control on the overload signal (issue 19): a real server whose event loop
runs late refuses a new session with 503 ``server_overloaded`` before the upgrade,
rather than degrading the live ones; the live session is still answered, and once
the loop is on time again a new session opens. Real server, aiohttp client, loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
from test_realtime_server_support import API_KEY, raw_client

from voxpipe.realtime_server.overload import OverloadLimits
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

LIMITS = OverloadLimits(lag_ms=20.0, window_ms=1_000, interval_ms=20)


async def upgrade(srv: RunningServer) -> tuple[int, dict[str, str], str]:
    """One more session's upgrade: its status, headers and (for a refusal) body."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(
                f"{srv.realtime_url}?model=gpt-realtime",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as ws:
                await ws.receive_json()  # session.created
                return 101, {}, ""
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status, dict(refused.headers or {}), refused.message


async def hog(stop: asyncio.Event, hold_s: float = 0.06) -> None:
    """Hold the server's loop 60 ms at a time, as a process with too many calls does."""
    while not stop.is_set():
        time.sleep(hold_s)  # noqa: ASYNC251 - the point: the loop is held
        await asyncio.sleep(0)


async def until(check: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls the guard's state
            await asyncio.sleep(0.05)


async def test_an_overloaded_server_refuses_a_new_session_and_keeps_the_live_one() -> None:
    brain = ScriptedBrain(["Still here."], pace=0)
    config = ServerConfig(api_key=API_KEY, overload=LIMITS)
    async with running_realtime_server(config=config, brain=brain) as srv:
        guard = srv.server.overload
        assert guard is not None
        await until(lambda: guard.lag_ms(asyncio.get_running_loop().time() * 1000) is not None, 30)
        async with raw_client(srv) as live:
            stop = asyncio.Event()
            hogging = asyncio.create_task(hog(stop))
            try:
                # The loop runs late: once the guard's median says so, an upgrade is refused.
                await until(lambda: guard.overloaded(asyncio.get_running_loop().time() * 1000), 30)
                status, headers, _ = await upgrade(srv)
                assert status == 503
                assert headers.get("Retry-After") == "1"  # the window, rounded up
                assert guard.refused >= 1
                assert len(srv.server.live_sessions) == 1  # nothing half-opened
                # The live session is still served while new ones are refused.
                await live.send({"type": "response.create"})
                done = await live.until("response.done", wait_s=60)
                assert done["response"]["status"] == "completed"
            finally:
                stop.set()
                await hogging
            # On time again: within a window (and some) a new session opens.
            opened_by = time.monotonic() + 30
            status = (await upgrade(srv))[0]
            while status != 101:
                assert time.monotonic() < opened_by, "still refused 30 s after the load went"
                await asyncio.sleep(0.2)
                status = (await upgrade(srv))[0]


async def test_without_overload_limits_a_late_loop_refuses_nothing() -> None:
    # The library default (an embedded server shares its loop with the caller's pipeline).
    brain = ScriptedBrain(["Still here."], pace=0)
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        assert srv.server.overload is None
        stop = asyncio.Event()
        hogging = asyncio.create_task(hog(stop))
        try:
            await asyncio.sleep(0.5)
            assert (await upgrade(srv))[0] == 101
        finally:
            stop.set()
            await hogging
