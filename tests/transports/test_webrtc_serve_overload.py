"""``voxpipe serve`` refuses a new call while its event loop runs late (issue 19).

Admission control on the overload signal: with ``ServeConfig.overload`` set, an
offer that arrives while the loop is held is a 503 ``overloaded`` before anything
is built; on time again, offers are taken (an SDP that is not one is then a 400:
the offer got past admission). A real serve app on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from webrtc_peer import offer

from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.realtime_server.overload import OverloadLimits
from voxpipe.transports.loop_lag import loop_now_ms
from voxpipe.transports.webrtc.app import ServeConfig, running_serve

LIMITS = OverloadLimits(lag_ms=20.0, window_ms=1_000, interval_ms=20)
NOT_SDP = {"sdp": "v=0 but not an offer", "type": "offer"}


async def hog(stop: asyncio.Event, hold_s: float = 0.06) -> None:
    """Hold the loop 60 ms at a time, as a process with too many calls does."""
    while not stop.is_set():
        time.sleep(hold_s)  # noqa: ASYNC251 - the point: the loop is held
        await asyncio.sleep(0)


async def until(check: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls the guard's state
            await asyncio.sleep(0.05)


async def test_an_overloaded_serve_refuses_an_offer_and_takes_one_once_on_time(
    tmp_path: Path,
) -> None:
    spec = LiveCallSpec(server_url="ws://127.0.0.1:9/v1/realtime", record_dir=tmp_path)
    async with running_serve(ServeConfig(call=spec, overload=LIMITS)) as serve:
        guard = serve.app.overload
        assert guard is not None
        await until(lambda: guard.lag_ms(loop_now_ms()) is not None, 30)
        stop = asyncio.Event()
        hogging = asyncio.create_task(hog(stop))
        try:
            await until(lambda: guard.overloaded(loop_now_ms()), 30)
            status, answer = await offer(serve.url, NOT_SDP)
            assert (status, answer["error"]["code"]) == (503, "overloaded")
            assert not serve.app.has_room()  # phone routes refuse through the same check
        finally:
            stop.set()
            await hogging
        assert not serve.app.calls
        deadline = time.monotonic() + 30
        while (status := (await offer(serve.url, NOT_SDP))[0]) == 503:
            assert time.monotonic() < deadline, "still refused 30 s after the load went"
            await asyncio.sleep(0.2)
        assert status == 400  # past admission: the SDP itself is what is refused now
        assert serve.app.has_room()
