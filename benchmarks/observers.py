"""Overhead of voxpipe's observers on the audio path, against the same pipeline without them.

The pipeline: the file transport (paced, as a live call; ``--unpaced`` for
speed) plays a caller recording of spoken questions with pauses -> pipecat's
user aggregator with Silero VAD (as on the chained path) -> a responder
standing in for the brain, which answers every end of speech with one second
of audio -> the file transport's output. The observed run adds every observer
a ``voxpipe call`` runs (one observer group): the call timeline, latency,
usage and call-event metrics, exporting to Prometheus metrics. A third run
adds one observer that does nothing: pipecat's own cost per observer.

The second path is the realtime graph (voxpipe's realtime service) talking
to ``voxpipe realtime-server`` (scripted brain) in a separate process, so only
the call's own CPU is counted.

CPU is ``time.process_time`` over the whole run (all threads, so Silero's
too); first audio is, per turn, the responder's answer start to the first
answer frame handed to the output (a probe just before it, in both runs).
Runs alternate (bare, observed, bare, ...) and medians are compared as a ratio.
Whole-run CPU on a shared 2-core machine varies by more than the observers
cost, so their own code is also timed directly: per event in the call, less
the timer's own cost, and by replaying the call's events back to back.

    python benchmarks/observers.py [--seconds 30] [--repeats 3] [--unpaced] [--path realtime]

Unpaced, turn detection depends on how fast the pipeline drains (the turn
strategies time out on the wall clock), so runs may answer different numbers
of turns; the paced default keeps the work identical across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import QUESTIONS, median, print_table, speak, write_result
from pipecat.frames.frames import (
    Frame,
    OutputAudioRawFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.chained import TurnSettings
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import BrainKind, ObserverGroup, instrument
from voxpipe.processors.timeline_observer import TimelineObserver
from voxpipe.timeline import Timeline
from voxpipe.transports.file import FileTransport

RATE = 16_000
OUT_RATE = 24_000
ANSWER_MS = 1_000
CHUNK_MS = 20
BARE, NOOP, OBSERVED = "bare", "one no-op observer", "voxpipe observers"
VAD_PATH, REALTIME_PATH = "vad+responder", "realtime"
BENCH_KEY = "bench"
VARIANTS = (BARE, NOOP, OBSERVED)


class Responder(FrameProcessor):
    """Answers each end of speech with ``ANSWER_MS`` of tone, as a brain would with audio."""

    def __init__(self) -> None:
        super().__init__()
        self.answered_at: list[float] = []
        samples = OUT_RATE * CHUNK_MS // 1000
        tone = np.sin(2 * np.pi * 220 * np.arange(samples) / OUT_RATE) * 3000
        self._chunk = tone.astype("<i2").tobytes()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if (
            isinstance(frame, VADUserStoppedSpeakingFrame)
            and direction is FrameDirection.DOWNSTREAM
        ):
            self.answered_at.append(time.perf_counter())
            for _ in range(ANSWER_MS // CHUNK_MS):
                await self.push_frame(
                    TTSAudioRawFrame(audio=self._chunk, sample_rate=OUT_RATE, num_channels=1)
                )


class FirstAudioProbe(FrameProcessor):
    """Notes when the first answer frame after each answer start reaches the output."""

    def __init__(self, responder: Responder) -> None:
        super().__init__()
        self.responder = responder
        self.first_audio_ms: list[float] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        answered = self.responder.answered_at
        if isinstance(frame, OutputAudioRawFrame) and len(self.first_audio_ms) < len(answered):
            self.first_audio_ms.append((time.perf_counter() - answered[-1]) * 1000)
        await self.push_frame(frame, direction)


TIMER_COST_S = 0.0  # set by main() before any run


class NoOp(BaseObserver):
    """pipecat's floor: one observer that sees every push and does nothing."""


class TimedGroup(ObserverGroup):
    """The instruments' group, timing its own CPU (``time.thread_time``: the loop's thread).

    Each event is timed, and the timer's own cost (two clock reads, measured
    by :func:`timer_cost_s`) is taken off, else it would be most of the figure.
    The events are kept so they can be replayed (:func:`replay_cost_s`).
    """

    def __init__(self, observers: list[BaseObserver]) -> None:
        super().__init__(observers)
        self.own_s = 0.0
        self.events: list[FramePushed] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        start = time.thread_time()
        await super().on_push_frame(data)
        self.own_s += time.thread_time() - start
        self.events.append(data)


def timer_cost_s(samples: int = 200_000) -> float:
    """CPU one timed section costs with nothing inside it (median of 5 batches)."""
    costs = []
    for _ in range(5):
        total = 0.0
        begin = time.process_time()
        for _ in range(samples):
            start = time.thread_time()
            total += time.thread_time() - start
        costs.append((time.process_time() - begin) / samples)
    return statistics.median(costs)


async def replay_cost_s(group: TimedGroup, repeats: int = 5) -> float:
    """CPU the group's code takes for the call's recorded events, replayed back to back.

    A lower bound next to the in-call figure: caches stay warm in a tight loop.
    """
    costs = []
    for _ in range(repeats):
        begin = time.process_time()
        for data in group.events:
            await ObserverGroup.on_push_frame(group, data)
        costs.append(time.process_time() - begin)
    return statistics.median(costs)


@dataclass
class Run:
    variant: str
    cpu_s: float
    wall_s: float
    turns: int
    first_audio_ms: list[float] = field(default_factory=list)
    own_cpu_s: float = 0.0  # CPU inside voxpipe's observer code (observed runs)
    events: int = 0  # pushes the observer group saw
    replay_cpu_s: float = 0.0  # the same events replayed back to back


def make_recording(seconds: float, path: Path) -> float:
    """Spoken questions with 1.2 s pauses, up to ``seconds`` long; returns its length."""
    from voxpipe.processors.local.engines import make_tts

    voice = make_tts()
    pause = np.zeros(RATE * 1200 // 1000, dtype="<i2")
    clips = [np.frombuffer(speak(voice, q, RATE), dtype="<i2") for q in QUESTIONS]
    parts: list[np.ndarray] = []
    total = 0
    while total < seconds * RATE:
        for clip in clips:
            parts += [clip, pause]
            total += len(clip) + len(pause)
    audio = np.concatenate(parts)[: int(seconds * RATE)]
    sf.write(str(path), audio, RATE, subtype="PCM_16")
    return len(audio) / RATE


def _observers(
    variant: str, transport: FileTransport, brain: FrameProcessor, kind: BrainKind
) -> list[BaseObserver]:
    if variant == NOOP:
        return [NoOp()]
    if variant == BARE:
        return []
    timeline = Timeline()
    instruments = instrument(
        transport.clock.now_ms,
        brain=brain,
        output=transport.output(),
        timeline=timeline,
        kind=kind,
        capture=transport,
        playback=transport,
        metrics=VoxpipeMetrics(),
    )
    [group] = instruments.observers_with(TimelineObserver(timeline, transport.clock.now_ms))
    assert isinstance(group, ObserverGroup)
    return [TimedGroup(group.members)]


async def one_run(recording: Path, variant: str, paced: bool, server_url: str | None) -> Run:
    transport = FileTransport(recording, paced=paced, trailing_silence_ms=1_000)
    responder = Responder()
    probe = FirstAudioProbe(responder)
    if server_url is None:
        pair = LLMContextAggregatorPair(LLMContext(), user_params=TurnSettings().user_params())
        stages = [transport.input(), pair.user(), responder, probe, transport.output()]
        pipeline = Pipeline(stages)
        observers = _observers(variant, transport, responder, BrainKind.SPEECH)
    else:
        graph = build_realtime_pipeline(transport, server_url=server_url, api_key=BENCH_KEY)
        pipeline = graph.pipeline
        observers = _observers(variant, transport, graph.brain, BrainKind.SPEECH)
    done = asyncio.Event()

    @transport.event_handler("on_input_finished")
    async def _finished(_t: FileTransport) -> None:
        done.set()

    cpu, wall = time.process_time(), time.perf_counter()
    async with CallSession(pipeline, observers=observers, end_timeout_secs=30):
        await asyncio.wait_for(done.wait(), 600)
        await asyncio.sleep(1.0)  # the trailing silence ends the last turn
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    timed = [o for o in observers if isinstance(o, TimedGroup)]
    events = sum(len(o.events) for o in timed)
    own = sum(o.own_s for o in timed) - events * TIMER_COST_S
    replay = sum([await replay_cost_s(o) for o in timed])
    answered = len(responder.answered_at)
    return Run(variant, cpu, wall, answered, probe.first_audio_ms, own, events, replay)


@contextmanager
def realtime_server() -> Iterator[str]:
    """voxpipe's realtime server (scripted brain) in a process of its own: not our CPU."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "voxpipe", "realtime-server", "--brain", "scripted"]
    cmd += ["--voice", "synthetic", "--port", str(port), "--api-key", BENCH_KEY]
    env = {**os.environ, "LOGURU_LEVEL": "WARNING"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        proc.terminate()
        proc.wait(10)


def summarise(path: str, runs: list[Run], audio_s: float) -> dict[str, Any]:
    by = {v: [r for r in runs if r.variant == v] for v in VARIANTS}
    cpu = {v: median([r.cpu_s * 1000 for r in by[v]]) or 0.0 for v in VARIANTS}
    own = median([r.own_cpu_s * 1000 for r in by[OBSERVED]]) or 0.0
    replay = median([r.replay_cpu_s * 1000 for r in by[OBSERVED]]) or 0.0
    events = median([float(r.events) for r in by[OBSERVED]]) or 0.0
    return {
        "path": path,
        "timer_cost_us": round(TIMER_COST_S * 1e6, 3),
        "observed_events_median": events,
        "own_observer_cpu_ms_median": own,
        "own_observer_cpu_ratio_vs_bare": round(own / cpu[BARE], 4),
        "replayed_observer_cpu_ms_median": round(replay, 2),
        "replayed_observer_cpu_ratio_vs_bare": round(replay / cpu[BARE], 4),
        "observer_us_per_event": round(own * 1000 / events, 3) if events else None,
        "cpu_ms_median": cpu,
        "cpu_ratio_vs_bare": {v: round(cpu[v] / cpu[BARE], 4) for v in VARIANTS},
        "cpu_ms_per_audio_second": {v: round(cpu[v] / audio_s, 2) for v in VARIANTS},
        "first_audio_ms_median": {
            v: median([x for r in by[v] for x in r.first_audio_ms]) for v in VARIANTS
        },
        "turns": {v: [r.turns for r in by[v]] for v in VARIANTS},
        "runs": [
            {
                "variant": r.variant,
                "cpu_ms": round(r.cpu_s * 1000, 1),
                "wall_s": round(r.wall_s, 3),
                "turns": r.turns,
                "first_audio_ms_median": median(r.first_audio_ms),
                "own_observer_cpu_ms": round(r.own_cpu_s * 1000, 1),
                "replayed_observer_cpu_ms": round(r.replay_cpu_s * 1000, 2),
                "events": r.events,
            }
            for r in runs
        ],
    }


async def measure(recording: Path, repeats: int, paced: bool, server: str | None) -> list[Run]:
    await one_run(recording, BARE, paced=False, server_url=server)  # warm up
    runs: list[Run] = []
    for _ in range(repeats):
        for variant in VARIANTS:  # interleaved, so drift in machine load hits all alike
            runs.append(await one_run(recording, variant, paced, server))
    return runs


async def main(seconds: float, repeats: int, paced: bool, paths: list[str]) -> None:
    global TIMER_COST_S
    TIMER_COST_S = timer_cost_s()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "caller.wav"
        audio_s = make_recording(seconds, recording)
        if VAD_PATH in paths:
            runs = await measure(recording, repeats, paced, None)
            results.append(summarise(VAD_PATH, runs, audio_s))
        if REALTIME_PATH in paths:
            with realtime_server() as url:
                runs = await measure(recording, repeats, paced, url)
            results.append(summarise(REALTIME_PATH, runs, audio_s))
    rows = [
        [
            r["path"],
            v,
            r["cpu_ms_median"][v],
            r["cpu_ms_per_audio_second"][v],
            r["cpu_ratio_vs_bare"][v],
            r["first_audio_ms_median"][v],
        ]
        for r in results
        for v in VARIANTS
    ]
    print_table(
        "CPU inside voxpipe's observer code, medians (in the call: thread time less the "
        f"timer's {TIMER_COST_S * 1e6:.2f} us a read; replayed: the call's events back to back)",
        [
            "path",
            "events",
            "in-call ms",
            "in-call share of bare CPU",
            "us per event",
            "replayed ms",
            "replayed share",
        ],
        [
            [
                r["path"],
                r["observed_events_median"],
                r["own_observer_cpu_ms_median"],
                r["own_observer_cpu_ratio_vs_bare"],
                r["observer_us_per_event"],
                r["replayed_observer_cpu_ms_median"],
                r["replayed_observer_cpu_ratio_vs_bare"],
            ]
            for r in results
        ],
    )
    print_table(
        f"Observers on the audio path: {audio_s:.0f} s of caller audio "
        f"({'paced' if paced else 'unpaced'}), {repeats} repeats, medians",
        ["path", "observers", "CPU ms", "CPU ms per audio s", "ratio vs bare", "first audio ms"],
        rows,
    )
    path = write_result(
        "observers",
        {
            "audio_seconds": round(audio_s, 1),
            "paced": paced,
            "repeats": repeats,
            "observers": [
                "TimelineObserver",
                "LatencyObserver",
                "UsageObserver",
                "CallEventMetrics",
            ],
            "goal": "cpu ratio < 1.02, no added first-audio latency",
            "paths": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unpaced", action="store_true", help="push audio as fast as possible")
    parser.add_argument("--path", choices=[VAD_PATH, REALTIME_PATH], action="append")
    args = parser.parse_args()
    paths = args.path or [VAD_PATH, REALTIME_PATH]
    asyncio.run(main(args.seconds, args.repeats, not args.unpaced, paths))
