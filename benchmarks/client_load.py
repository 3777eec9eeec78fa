"""Concurrent realtime *client* calls in one process: voxpipe's service against pipecat's stock one.

``benchmarks/load.py`` measures the embedded server with bare WebSocket callers.
This one measures the other side, the process a team runs its calls in: N
voxpipe realtime graphs at once in this process (paced file transport in ->
user aggregator -> realtime service -> [tap] -> file transport out, under
``CallSession``), each a caller asking two questions, against one embedded
server in a child process (``load.py``'s: server VAD on every session, a
scripted synthetic voice streamed at real time in 20 ms chunks, so nothing
here waits on a model). The baseline is the same graph and session with
pipecat's stock ``OpenAIRealtimeLLMService`` as the brain, at the same N,
run alternately with voxpipe's (so load drift hits both alike).

Per level and service:

- output jitter: at the tap after the brain, the silence a reply's audio
  frames arrive late by (arrival gap less the previous frame's length), p95
  over all replies; what this process adds to the server's real-time stream;
- first audio: the end of a question in the caller's recording -> the reply's
  first audio frame at the tap, on the call's clock, p50 and p95 (server VAD
  included, the same for both);
- this process's CPU, % of one core per call over the level's wall time, and
  its event loop's lag (lateness of a 2 ms timer), p95;
- replies: how many of the 2N were heard (a reply is audio frames at the tap).

The machine is shared and loaded: medians and the load average are recorded,
and the headline is the ratio voxpipe / stock at each N.

    python benchmarks/client_load.py                 # levels 1,5,10,20
    python benchmarks/client_load.py --levels 1,10   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import numpy as np
import soundfile as sf
from load import LoopLag, ServerProcess, free_port
from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.transports.file import FileTransport

LEVELS = (1, 5, 10, 20)
KEY = "bench"  # load.py's server key
RATE = 16_000
LINES = ("What time does the pharmacy open on Saturday?", "Is the store open on public holidays?")
LEAD_MS = 1_000
GAP_MS = 7_000  # the scripted reply is ~4 s of audio: room for it after each question
REPLY_GAP_MS = 400  # frames further apart than this start a new reply
SERVICES = ("voxpipe", "pipecat_stock")


@dataclass
class Recording:
    path: Path
    ends_ms: list[int]  # where each question ends in the caller's audio


def make_recording(folder: Path) -> Recording:
    from voxpipe.engines import make_tts

    voice = make_tts(deterministic=True)
    pieces: list[bytes] = [bytes(RATE * 2 * LEAD_MS // 1000)]
    ends: list[int] = []
    at = LEAD_MS
    for line in LINES:
        speech = _common.speak(voice, line, RATE)
        at += len(speech) // 2 * 1000 // RATE
        ends.append(at)
        pieces += [speech, bytes(RATE * 2 * GAP_MS // 1000)]
        at += GAP_MS
    path = folder / "caller.wav"
    audio = np.frombuffer(b"".join(pieces), dtype="<i2")
    sf.write(str(path), audio, RATE, subtype="PCM_16")
    return Recording(path, ends)


class ArrivalTap(FrameProcessor):
    """After the brain: when each bot audio frame arrived (monotonic s, call clock ms)."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self._clock = clock
        self.frames: list[tuple[float, float, float]] = []  # (monotonic s, call ms, length s)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and direction is FrameDirection.DOWNSTREAM:
            length = len(frame.audio) / 2 / frame.sample_rate / frame.num_channels
            self.frames.append((time.monotonic(), self._clock(), length))
        await self.push_frame(frame, direction)

    def replies(self) -> list[list[tuple[float, float, float]]]:
        runs: list[list[tuple[float, float, float]]] = []
        for frame in self.frames:
            if runs and frame[0] - runs[-1][-1][0] <= REPLY_GAP_MS / 1000:
                runs[-1].append(frame)
            else:
                runs.append([frame])
        return runs


@dataclass
class Level:
    service: str
    calls: int
    replies_heard: int
    replies_expected: int
    jitter_p95_ms: float | None
    jitter_max_ms: float | None
    first_audio_p50_ms: float | None
    first_audio_p95_ms: float | None
    cpu_pct_per_call: float
    loop_lag_p95_ms: float | None
    wall_s: float
    failures: list[str] = field(default_factory=list)


async def one_call(
    url: str, recording: Recording, stock: bool
) -> tuple[list[float], list[float], int]:
    """One caller's call: its jitter samples, its first-audio latencies, replies heard."""
    transport = FileTransport(recording.path, paced=True)
    clock = transport.clock.now_ms
    tap = ArrivalTap(clock)
    factory = OpenAIRealtimeLLMService if stock else None
    graph = build_realtime_pipeline(transport, server_url=url, api_key=KEY, tap=tap, brain=factory)
    finished = asyncio.Event()

    @transport.event_handler("on_input_finished")
    async def _done(_t: Any) -> None:
        finished.set()

    async with CallSession(graph.pipeline, end_timeout_secs=5):
        await finished.wait()
        await asyncio.sleep(0.5)
    jitter: list[float] = []
    firsts: list[float] = []
    replies = tap.replies()
    for reply in replies:
        for before, after in itertools.pairwise(reply):
            jitter.append(max(0.0, (after[0] - before[0] - before[2]) * 1000))
    for end in recording.ends_ms:
        after_end = [r[0][1] for r in replies if r[0][1] >= end]
        if after_end:
            firsts.append(after_end[0] - end)
    return jitter, firsts, len(replies)


def cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def run_level(url: str, recording: Recording, n: int, service: str) -> Level:
    lag = LoopLag()
    monitor = asyncio.create_task(lag.run())
    cpu_before, wall_before = cpu_s(), time.monotonic()
    results = await asyncio.gather(
        *(one_call(url, recording, service == "pipecat_stock") for _ in range(n)),
        return_exceptions=True,
    )
    wall = time.monotonic() - wall_before
    cpu = cpu_s() - cpu_before
    monitor.cancel()
    jitter: list[float] = []
    firsts: list[float] = []
    heard = 0
    failures: list[str] = []
    for result in results:
        if isinstance(result, BaseException):
            failures.append(f"{type(result).__name__}: {result}"[:200])
            continue
        jitter += result[0]
        firsts += result[1]
        heard += min(result[2], len(LINES))
    p = _common.percentile
    return Level(
        service=service,
        calls=n,
        replies_heard=heard,
        replies_expected=n * len(LINES),
        jitter_p95_ms=p(jitter, 95),
        jitter_max_ms=round(max(jitter), 1) if jitter else None,
        first_audio_p50_ms=p(firsts, 50),
        first_audio_p95_ms=p(firsts, 95),
        cpu_pct_per_call=round(100 * cpu / wall / n, 2),
        loop_lag_p95_ms=p(lag.take(), 95),
        wall_s=round(wall, 1),
        failures=failures,
    )


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


async def bench(levels: tuple[int, ...], repeats: int) -> dict[str, Any]:
    server = ServerProcess(free_port(), max_sessions=max(levels) + 5)
    url = f"ws://127.0.0.1:{server.port}/v1/realtime"
    loads: list[float] = []
    runs: list[Level] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            recording = make_recording(Path(tmp))
            for service in SERVICES:  # warm-up: imports, the server's VAD, caches
                await run_level(url, recording, 1, service)
            for _ in range(repeats):
                for n in levels:
                    for service in SERVICES:
                        loads.append(os.getloadavg()[0])
                        level = await run_level(url, recording, n, service)
                        runs.append(level)
                        print(
                            f"  {service:>13} x{n:<3} replies {level.replies_heard}/"
                            f"{level.replies_expected}, jitter p95 {level.jitter_p95_ms} ms, "
                            f"first audio p50 {level.first_audio_p50_ms} ms, "
                            f"cpu/call {level.cpu_pct_per_call}%"
                            + (f", failures {level.failures}" if level.failures else ""),
                            flush=True,
                        )
    finally:
        server.stop()
    summary: dict[str, Any] = {}
    for n in levels:
        row: dict[str, Any] = {}
        for service in SERVICES:
            mine = [r for r in runs if r.calls == n and r.service == service]

            def med(name: str, mine: list[Level] = mine) -> float | None:
                values = [getattr(r, name) for r in mine if getattr(r, name) is not None]
                return round(statistics.median(values), 2) if values else None

            row[service] = {
                "jitter_p95_ms": med("jitter_p95_ms"),
                "first_audio_p50_ms": med("first_audio_p50_ms"),
                "first_audio_p95_ms": med("first_audio_p95_ms"),
                "cpu_pct_per_call": med("cpu_pct_per_call"),
                "loop_lag_p95_ms": med("loop_lag_p95_ms"),
                "replies_heard": sum(r.replies_heard for r in mine),
                "replies_expected": sum(r.replies_expected for r in mine),
            }
        ours, stock = row["voxpipe"], row["pipecat_stock"]
        row["ratio_voxpipe_over_stock"] = {
            k: ratio(ours[k], stock[k])
            for k in ("jitter_p95_ms", "first_audio_p50_ms", "cpu_pct_per_call")
        }
        summary[str(n)] = row
    return {
        "levels": list(levels),
        "repeats": repeats,
        "load_1m_range": [round(min(loads), 1), round(max(loads), 1)] if loads else None,
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }


def report(data: dict[str, Any]) -> None:
    rows = []
    for n, row in data["summary"].items():
        ours, stock = row["voxpipe"], row["pipecat_stock"]

        def pair(key: str, ours: dict[str, Any] = ours, stock: dict[str, Any] = stock) -> str:
            return f"{ours[key]} / {stock[key]}"

        rows.append(
            [
                n,
                f"{ours['replies_heard']}/{ours['replies_expected']} / "
                f"{stock['replies_heard']}/{stock['replies_expected']}",
                pair("jitter_p95_ms"),
                pair("first_audio_p50_ms"),
                pair("cpu_pct_per_call"),
                pair("loop_lag_p95_ms"),
                row["ratio_voxpipe_over_stock"]["cpu_pct_per_call"],
            ]
        )
    _common.print_table(
        f"Realtime client calls in one process, voxpipe / pipecat stock "
        f"(medians of {data['repeats']}, load {data['load_1m_range']})",
        [
            "calls",
            "replies heard",
            "jitter p95 ms",
            "first audio p50 ms",
            "% core per call",
            "loop lag p95 ms",
            "CPU ratio",
        ],
        rows,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    levels = tuple(int(n) for n in args.levels.split(","))
    from voxpipe.logs import configure_logging

    configure_logging(level="ERROR")  # pipecat warns once per graph about realtime turn mode
    data = asyncio.run(bench(levels, args.repeats))
    report(data)
    print(f"wrote {_common.write_result('client_load', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
