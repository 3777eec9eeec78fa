"""A soak: repeated realtime calls against the embedded server for an hour (issue 19).

One process runs the embedded Realtime server (server VAD on every session,
a light scripted brain speaking a synthetic voice at real time) and a few
callers that call again and again: connect, stream microphone noise in real
time, ask for replies, barge into every third one (``response.cancel`` and a
``conversation.item.truncate`` at what was heard), hang up, call again. Every
sample period the process's RSS, open file descriptors and asyncio tasks are
sampled, with the calls and turns done so far. What a server that leaks looks
like: RSS, fds or tasks that climb with the calls. The figure that matters:
RSS growth from the end of warm-up (a sixth of the run: minute 10 of 60) to
the end; the issue's goal is under 5 %, and 0 lost turns.

    python benchmarks/soak.py               # 60 minutes, a sample a minute
    python benchmarks/soak.py --minutes 3   # the short version (a sample every 15 s)

Prints a table and writes benchmarks/results/soak.json (or soak_<N>min.json
for another length) with the load average. Loopback only; not part of make test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _common
import aiohttp
import numpy as np

REPLY = "Sure. The shop opens at nine and closes at six, every day but Sunday."
CALLERS = 4
TURNS_PER_CALL = 6
KEY = "soak"


@dataclass
class Counts:
    calls: int = 0
    turns: int = 0
    barge_ins: int = 0
    lost_turns: int = 0
    failed_calls: int = 0


@dataclass
class Sample:
    minute: float
    rss_mb: float
    fds: int
    tasks: int
    live_sessions: int
    calls: int
    turns: int
    lost_turns: int


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def microphone(ws: aiohttp.ClientWebSocketResponse, noise: bytes) -> None:
    loop = asyncio.get_running_loop()
    step, started, sent = 48 * 100, loop.time(), 0
    while True:
        chunk = noise[(sent * step) % len(noise) :][:step]
        payload = base64.b64encode(chunk).decode()
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * 0.1 - loop.time()))


async def turn(ws: aiohttp.ClientWebSocketResponse, barge_in: bool, counts: Counts) -> None:
    """One reply, heard in full or cut after a second of it (and truncated there)."""
    await ws.send_str(json.dumps({"type": "response.create"}))
    heard_ms = 0.0
    item_id = ""
    cut = False
    async with asyncio.timeout(60):
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {message.type}")
            event = json.loads(message.data)
            kind = event["type"]
            if kind == "response.output_audio.delta":
                item_id = event["item_id"]
                heard_ms += len(event["delta"]) * 3 / 4 / 48
                if barge_in and not cut and heard_ms >= 1000:
                    cut = True
                    await ws.send_str(json.dumps({"type": "response.cancel"}))
                    truncate = {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": 1000,
                    }
                    await ws.send_str(json.dumps(truncate))
            elif kind == "error":
                raise RuntimeError(event["error"]["message"])
            elif kind == "response.done":
                status = event["response"]["status"]
                if status == "completed" or (cut and status == "cancelled"):
                    counts.turns += 1
                    counts.barge_ins += cut
                else:
                    counts.lost_turns += 1
                return


async def caller(url: str, seed: int, counts: Counts, stop: asyncio.Event) -> None:
    noise = (np.random.default_rng(seed).normal(0, 300, 24 * 3000)).astype("<i2").tobytes()
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.ws_connect(
                    url, headers={"Authorization": f"Bearer {KEY}"}, max_msg_size=0
                ) as ws:
                    await ws.receive()  # session.created
                    mic = asyncio.create_task(microphone(ws, noise))
                    try:
                        for n in range(TURNS_PER_CALL):
                            await asyncio.sleep(1.0)  # the caller's turn
                            await turn(ws, barge_in=n % 3 == 2, counts=counts)
                    finally:
                        mic.cancel()
                counts.calls += 1
            except Exception as exc:  # counted and reported, the soak goes on
                counts.failed_calls += 1
                print(f"  a call failed: {exc!r}", flush=True)
                await asyncio.sleep(1.0)


async def soak(minutes: float, callers: int) -> dict[str, Any]:
    from voxpipe.transports.realtime_server import (
        ScriptedBrain,
        ServerConfig,
        running_realtime_server,
    )
    from voxpipe.transports.realtime_server.brains import SyntheticVoice

    period_s = 60.0 if minutes >= 10 else 15.0
    brain = ScriptedBrain([REPLY], voice=SyntheticVoice(), pace=1.0, chunk_ms=20)
    counts = Counts()
    samples: list[Sample] = []
    stop = asyncio.Event()
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        url = f"{srv.realtime_url}?model=gpt-realtime"
        began = time.monotonic()
        tasks = [asyncio.create_task(caller(url, i, counts, stop)) for i in range(callers)]

        def sample() -> None:
            gc.collect()
            s = Sample(
                minute=round((time.monotonic() - began) / 60, 2),
                rss_mb=round(rss_mb(), 1),
                fds=open_fds(),
                tasks=len(asyncio.all_tasks()),
                live_sessions=len(srv.server.live_sessions),
                calls=counts.calls,
                turns=counts.turns,
                lost_turns=counts.lost_turns,
            )
            samples.append(s)
            print(f"  {s}", flush=True)

        sample()
        while time.monotonic() - began < minutes * 60:
            await asyncio.sleep(min(period_s, began + minutes * 60 - time.monotonic()))
            sample()
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.5)  # the server's side of the last hang-ups
        sample()
    return report(samples, counts, minutes, callers)


def report(samples: list[Sample], counts: Counts, minutes: float, callers: int) -> dict[str, Any]:
    load = os.getloadavg()
    _common.print_table(
        f"Soak: {callers} callers calling again and again for {minutes:g} min "
        f"(load {load[0]:.1f} {load[1]:.1f}, {os.cpu_count()} cores)",
        ["minute", "RSS MB", "fds", "tasks", "live sessions", "calls", "turns", "lost turns"],
        [
            [s.minute, s.rss_mb, s.fds, s.tasks, s.live_sessions, s.calls, s.turns, s.lost_turns]
            for s in samples
        ],
    )
    # Warm-up: the first sixth of the run (minute 10 of 60); the baseline is the sample then.
    warm = next(s for s in samples if s.minute >= minutes / 6)
    during = [s for s in samples[:-1] if s.minute >= warm.minute]
    last = during[-1]
    growth = round((last.rss_mb - warm.rss_mb) / warm.rss_mb * 100, 2)
    per_call = (
        round((last.rss_mb - warm.rss_mb) * 1024 / max(1, last.calls - warm.calls), 1)
        if last.calls > warm.calls
        else None
    )
    end = samples[-1]
    print(
        f"RSS {warm.rss_mb} MB at minute {warm.minute} -> {last.rss_mb} MB at minute "
        f"{last.minute}: {growth:+} % ({per_call} KB per call over {last.calls - warm.calls} "
        f"calls); fds {warm.fds} -> {last.fds}, tasks {warm.tasks} -> {last.tasks}; after the "
        f"last hang-up: {end.fds} fds, {end.tasks} tasks, {end.live_sessions} live sessions; "
        f"{counts.turns} turns, {counts.barge_ins} barge-ins, {counts.lost_turns} lost, "
        f"{counts.failed_calls} failed calls"
    )
    return {
        "minutes": minutes,
        "callers": callers,
        "samples": [asdict(s) for s in samples],
        "counts": asdict(counts),
        "warm_up_minute": warm.minute,
        "rss_growth_after_warm_up_pct": growth,
        "rss_kb_per_call_after_warm_up": per_call,
        "fds_after_warm_up": [warm.fds, last.fds],
        "tasks_after_warm_up": [warm.tasks, last.tasks],
        "after_last_hang_up": {"fds": end.fds, "tasks": end.tasks, "live": end.live_sessions},
        "load_average": [round(x, 2) for x in load],
        "goal": {"rss_growth_pct_below": 5.0, "lost_turns": 0},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--callers", type=int, default=CALLERS)
    args = parser.parse_args()
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    from loguru import logger

    logger.remove()
    logger.add(lambda m: print(m, end=""), level="WARNING")
    results = asyncio.run(soak(args.minutes, args.callers))
    name = "soak" if args.minutes == 60 else f"soak_{args.minutes:g}min"
    print(f"wrote {_common.write_result(name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
