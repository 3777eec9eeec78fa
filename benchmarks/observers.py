"""Overhead of voxpipe's observers on the audio path, against the same pipeline without them.

Two pipelines, each run bare and observed:

- ``vad+responder``: the file transport plays a recording of spoken questions
  with pauses -> pipecat's user aggregator with Silero VAD (as on the chained
  path) -> a responder standing in for the brain, which answers every end of
  speech with one second of audio -> the file transport's output;
- ``realtime``: the realtime graph (voxpipe's realtime service) talking to
  ``voxpipe realtime-server`` (scripted brain) in another process, so only the
  call's own CPU is counted.

Observed means every instrument a ``voxpipe call`` runs: the call timeline,
latency, usage and call-event metrics, exporting to Prometheus metrics. They
run in one of two ways, both measured:

- inline (the default: every voxpipe graph is an ``ObservedPipeline``), inside
  the pushes they observe;
- as one ordinary pipecat observer (``ObserverGroup``): pipecat queues every
  push and every processed frame to it and runs it in a task of its own.

A fourth variant adds one pipecat observer that does nothing and asks only
for first pushes: the floor of pipecat's own observer machinery.

CPU is measured twice, because whole-run CPU time on a shared 2-core machine
varies from run to run by more than the goal (2%):

1. **Instructions** (the headline): each variant runs in a process of its own
   under ``valgrind --tool=callgrind``, counting only during the call. Real
   time cannot be kept under valgrind, so the VAD path pushes the recording
   unpaced (deterministic), and the realtime path is paced on a call clock
   running 8 times slower than the wall (unpaced, the server's answers race
   the caller differently every run). The count is the CPU work itself,
   repeatable to about 0.2% whatever else the machine does; bare is run
   first and last to show the spread.
2. **CPU time**, paced in real time as a live call: ``time.process_time`` over
   the run (all threads, Silero's too), variants interleaved, medians.

First audio, in the paced runs, is per turn the responder's answer start to
the first answer frame handed to the output (a probe just before it, in
every variant): inline observers run inside the pushes, so this is where
they would add latency.

    python benchmarks/observers.py [--seconds 20] [--repeats 3] [--path realtime]
                                   [--no-instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import re
import shutil
import socket
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
    InputAudioRawFrame,
    OutputAudioRawFrame,
    TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.chained import TurnSettings
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import (
    BrainKind,
    InlineObserver,
    ObservedPipeline,
    ObserverGroup,
    instrument,
)
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.timeline import Timeline
from voxpipe.transports.file import FileTransport, MonotonicClock

RATE = 16_000
OUT_RATE = 24_000
ANSWER_MS = 1_000
CHUNK_MS = 20
TRAILING_MS = 1_000
VAD_PATH, REALTIME_PATH = "vad+responder", "realtime"
BENCH_KEY = "bench"
REALTIME_DILATION = 8.0


class Variant(enum.Enum):
    BARE = "bare"
    PIPECAT_NOOP = "one no-op pipecat observer (first pushes)"
    PIPECAT_GROUP = "voxpipe instruments as a pipecat observer"
    INLINE = "voxpipe instruments inline (default)"


PACED_VARIANTS = (Variant.BARE, Variant.INLINE, Variant.PIPECAT_GROUP)


class Responder(FrameProcessor):
    """Answers each end of speech with ``ANSWER_MS`` of tone, as a brain would with audio."""

    def __init__(self) -> None:
        super().__init__()
        self.answered_at: list[float] = []
        self.chunks_heard = 0
        samples = OUT_RATE * CHUNK_MS // 1000
        tone = np.sin(2 * np.pi * 220 * np.arange(samples) / OUT_RATE) * 3000
        self._chunk = tone.astype("<i2").tobytes()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.chunks_heard += 1
        elif (
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


class NoOp(BaseObserver):
    """pipecat's floor: one observer that asks for first pushes only and does nothing."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)


@dataclass
class Call:
    """One built call: its pipeline, observers, and what tells us it is over."""

    transport: FileTransport
    pipeline: ObservedPipeline
    observers: list[BaseObserver]
    responder: Responder | None = None
    probe: FirstAudioProbe | None = None


def _instruments(transport: FileTransport, brain: FrameProcessor) -> list[InlineObserver]:
    timeline = Timeline()
    instruments = instrument(
        transport.clock.now_ms,
        brain=brain,
        output=transport.output(),
        input=transport.input(),
        timeline=timeline,
        kind=BrainKind.SPEECH,
        capture=transport,
        playback=transport,
        metrics=VoxpipeMetrics(),
    )
    return [TimelineObserver(timeline, transport.clock.now_ms), *instruments.observers]


def _observers(variant: Variant, transport: FileTransport, brain: FrameProcessor) -> list[Any]:
    if variant is Variant.BARE:
        return []
    if variant is Variant.PIPECAT_NOOP:
        return [NoOp()]
    instruments = _instruments(transport, brain)
    if variant is Variant.PIPECAT_GROUP:
        return [ObserverGroup(instruments)]  # not inline: the worker queues to it
    return list(instruments)  # CallSession runs these inside the pipeline's pushes


class DilatedClock(MonotonicClock):
    """The call's clock running ``factor`` times slower than the wall.

    A paced call under valgrind: the pipeline keeps up with the caller and
    idles between chunks as in a live call, and the server's replies arrive
    at the same points of the conversation in every run.
    """

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def now_ms(self) -> float:
        return super().now_ms() / self.factor

    async def sleep_until(self, t_ms: float) -> None:
        delay = (t_ms - self.now_ms()) * self.factor / 1000
        if delay > 0:
            await asyncio.sleep(delay)


def build_call(
    recording: Path, variant: Variant, paced: bool, server_url: str | None, dilation: float = 1.0
) -> Call:
    clock = DilatedClock(dilation) if dilation != 1.0 else None
    transport = FileTransport(recording, paced=paced, trailing_silence_ms=TRAILING_MS, clock=clock)
    if server_url is not None:
        graph = build_realtime_pipeline(transport, server_url=server_url, api_key=BENCH_KEY)
        return Call(transport, graph.pipeline, _observers(variant, transport, graph.brain))
    responder = Responder()
    probe = FirstAudioProbe(responder)
    pair = LLMContextAggregatorPair(LLMContext(), user_params=TurnSettings().user_params())
    stages = [transport.input(), pair.user(), responder, probe, transport.output()]
    observers = _observers(variant, transport, responder)
    return Call(transport, ObservedPipeline(stages), observers, responder, probe)


async def run_call(call: Call, audio_s: float, on_start: Any = None) -> None:
    """Run ``call`` until its recording (and trailing silence) has been heard and answered."""
    done = asyncio.Event()

    @call.transport.event_handler("on_input_finished")
    async def _finished(_t: FileTransport) -> None:
        done.set()

    chunks = int((audio_s * 1000 + TRAILING_MS) // CHUNK_MS)
    async with CallSession(call.pipeline, observers=call.observers, end_timeout_secs=30):
        if on_start is not None:
            on_start()
        await asyncio.wait_for(done.wait(), 6000)
        await _settled(call, chunks)


async def _settled(call: Call, chunks: int) -> None:
    """Every chunk reached the responder (VAD path), or the bot has been quiet a while."""
    if call.responder is not None:
        while call.responder.chunks_heard < chunks:  # noqa: ASYNC110 - a real pipeline drains
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        return
    clock = call.transport.clock
    written, quiet_since = -1, clock.now_ms()
    while clock.now_ms() - quiet_since < 2_000:  # two seconds of the call's time
        await asyncio.sleep(0.1)
        if len(call.transport.written) != written:
            written, quiet_since = len(call.transport.written), clock.now_ms()


# -- instructions, under callgrind -------------------------------------------------------


def _callgrind_instrumentation(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


async def child(recording: Path, variant: Variant, server_url: str | None, dilation: float) -> None:
    """One variant in this process (run under callgrind): a warm-up, then the counted call.

    ``dilation`` 0 pushes the recording unpaced; otherwise it is paced on a
    clock that many times slower than the wall.
    """
    audio_s = sf.info(str(recording)).duration
    await run_call(build_call(recording, Variant.BARE, False, server_url), audio_s)
    paced = dilation > 0
    call = build_call(recording, variant, paced, server_url, dilation if paced else 1.0)
    await run_call(call, audio_s, on_start=lambda: _callgrind_instrumentation(True))
    _callgrind_instrumentation(False)
    answered = len(call.responder.answered_at) if call.responder else len(call.transport.written)
    print(f"answered {answered}", file=sys.stderr)


_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count_instructions(
    recording: Path, variant: Variant, server_url: str | None, dilation: float = 0.0
) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--child", variant.name, "--recording", str(recording)]
    cmd += ["--dilation", str(dilation)]
    if server_url is not None:
        cmd += ["--server-url", server_url]
    env = {**os.environ, "LOGURU_LEVEL": "WARNING"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"callgrind run of {variant.name} failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def instruction_counts(recording: Path, server_url: str | None) -> dict[str, Any]:
    # The VAD path is deterministic unpaced. The realtime path is not (a server
    # answering a caller who talks 50 times faster than real time), so it is
    # paced on a clock slowed enough for valgrind to keep up.
    dilation = 0.0 if server_url is None else REALTIME_DILATION
    counts: dict[Variant, list[int]] = {v: [] for v in Variant}
    for variant in [*Variant, Variant.BARE]:  # bare first and last: its spread is the noise
        counts[variant].append(count_instructions(recording, variant, server_url, dilation))
    bare = min(counts[Variant.BARE])
    spread = (max(counts[Variant.BARE]) - bare) / bare
    return {
        "mode": "unpaced" if dilation == 0 else f"paced, clock {dilation:g}x slower than the wall",
        "instructions": {v.value: counts[v] for v in Variant},
        "ratio_vs_bare": {v.value: round(min(counts[v]) / bare, 4) for v in Variant},
        "bare_spread": round(spread, 4),
    }


# -- CPU time and first audio, paced -----------------------------------------------------


@dataclass
class Run:
    variant: Variant
    cpu_s: float
    turns: int
    first_audio_ms: list[float] = field(default_factory=list)


async def paced_run(recording: Path, variant: Variant, server_url: str | None) -> Run:
    audio_s = sf.info(str(recording)).duration
    call = build_call(recording, variant, True, server_url)
    cpu = time.process_time()
    await run_call(call, audio_s)
    cpu = time.process_time() - cpu
    turns = len(call.responder.answered_at) if call.responder else len(call.transport.written)
    return Run(variant, cpu, turns, call.probe.first_audio_ms if call.probe else [])


async def paced_runs(recording: Path, repeats: int, server_url: str | None) -> list[Run]:
    await paced_run(recording, Variant.BARE, server_url)  # warm up
    runs = []
    for _ in range(repeats):
        for variant in PACED_VARIANTS:  # interleaved: drift in machine load hits all alike
            runs.append(await paced_run(recording, variant, server_url))
    return runs


def summarise_paced(runs: list[Run], audio_s: float) -> dict[str, Any]:
    by = {v: [r for r in runs if r.variant is v] for v in PACED_VARIANTS}
    cpu = {v: median([r.cpu_s * 1000 for r in by[v]]) or 0.0 for v in PACED_VARIANTS}
    return {
        "cpu_ms_median": {v.value: cpu[v] for v in PACED_VARIANTS},
        "cpu_ratio_vs_bare": {v.value: round(cpu[v] / cpu[Variant.BARE], 4) for v in by},
        "cpu_ms_per_audio_second": {v.value: round(cpu[v] / audio_s, 2) for v in by},
        "first_audio_ms_median": {
            v.value: median([x for r in by[v] for x in r.first_audio_ms]) for v in by
        },
        "turns": {v.value: [r.turns for r in by[v]] for v in by},
        "runs": [
            {
                "variant": r.variant.value,
                "cpu_ms": round(r.cpu_s * 1000, 1),
                "turns": r.turns,
                "first_audio_ms_median": median(r.first_audio_ms),
            }
            for r in runs
        ],
    }


# -- set-up and report -------------------------------------------------------------------


def make_recording(seconds: float, path: Path) -> float:
    """Spoken questions with 1.2 s pauses, up to ``seconds`` long; returns its length."""
    from voxpipe.engines import make_tts

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


@contextmanager
def endpoint(path: str) -> Iterator[str | None]:
    if path == REALTIME_PATH:
        with realtime_server() as url:
            yield url
    else:
        yield None


def print_results(results: list[dict[str, Any]], audio_s: float, repeats: int) -> None:
    counted = [r for r in results if "instructions" in r]
    if counted:
        print_table(
            "Instructions executed during the call (callgrind), ratio vs bare",
            ["path", *[v.value for v in Variant], "bare run-to-run spread"],
            [
                [
                    r["path"],
                    *[r["instructions"]["ratio_vs_bare"][v.value] for v in Variant],
                    r["instructions"]["bare_spread"],
                ]
                for r in counted
            ],
        )
    print_table(
        f"Paced in real time: {audio_s:.0f} s of caller audio, {repeats} repeats, medians",
        ["path", "observers", "CPU ms", "CPU ms per audio s", "ratio vs bare", "first audio ms"],
        [
            [
                r["path"],
                v.value,
                r["paced"]["cpu_ms_median"][v.value],
                r["paced"]["cpu_ms_per_audio_second"][v.value],
                r["paced"]["cpu_ratio_vs_bare"][v.value],
                r["paced"]["first_audio_ms_median"][v.value],
            ]
            for r in results
            for v in PACED_VARIANTS
        ],
    )


async def main(seconds: float, repeats: int, paths: list[str], instructions: bool) -> None:
    if instructions and shutil.which("valgrind") is None:
        print("valgrind not found: instruction counts skipped")
        instructions = False
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "caller.wav"
        audio_s = make_recording(seconds, recording)
        for path in paths:
            with endpoint(path) as url:
                result: dict[str, Any] = {"path": path}
                if instructions:
                    result["instructions"] = instruction_counts(recording, url)
                runs = await paced_runs(recording, repeats, url)
                result["paced"] = summarise_paced(runs, audio_s)
            results.append(result)
    print_results(results, audio_s, repeats)
    out = write_result(
        "observers",
        {
            "audio_seconds": round(audio_s, 1),
            "repeats": repeats,
            "observers": [
                "TimelineObserver",
                "LatencyObserver",
                "UsageObserver",
                "CallEventMetrics",
            ],
            "goal": "instructions and CPU ratio < 1.02 (inline), no added first-audio latency",
            "paths": results,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--path", choices=[VAD_PATH, REALTIME_PATH], action="append")
    parser.add_argument("--no-instructions", action="store_true", help="skip callgrind")
    parser.add_argument("--child", choices=[v.name for v in Variant], help=argparse.SUPPRESS)
    parser.add_argument("--recording", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--server-url", help=argparse.SUPPRESS)
    parser.add_argument("--dilation", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.recording, Variant[args.child], args.server_url, args.dilation))
    else:
        paths = args.path or [VAD_PATH, REALTIME_PATH]
        asyncio.run(main(args.seconds, args.repeats, paths, not args.no_instructions))
