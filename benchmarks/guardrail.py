"""Benchmark the guardrail tap: what it costs the audio, and how much unsafe audio it lets out.

(a) Cost, tap on vs off, as ratios measured in the same run:
    - per-frame transit through the graph slot (audio frames, and text deltas)
      with no tap, a plain pass-through processor, and the tap (deny + PII on
      the word gate, plus a slow remote policy in flight), one frame at a time
      so queueing does not hide the hop;
    - first-audio latency of the realtime graph against the local realtime
      server (scripted brain): caller's speech end -> first bot audio written,
      on vs off, interleaved runs.
(b) Stopping: over responses with a trip phrase ("pineapple") at varied
    positions in the scripted brain's reply, realtime graph against the local
    server: ms of the phrase's audio the output transport played, and the time
    from the phrase's text reaching the tap to the transport dropping the
    audio. The word gate (the default) and the debounced cadence (pattern
    policies only every 100 characters) side by side.

Prints tables and writes benchmarks/results/guardrail.json (medians).
Run: ``.venv/bin/python benchmarks/guardrail.py [--positions 22] [--latency-runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import median, percentile, print_table, speak, write_result
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from voxpipe.guardrails import DenyPolicy, PiiPolicy, Verdict
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.guardrails.tap import GuardrailTap, ScanCadence
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ServerConfig,
    SyntheticVoice,
    running_realtime_server,
)

API_KEY = "bench-key"
PHRASE = "pineapple"
FILLER = [
    "thanks",
    "for",
    "calling",
    "the",
    "pharmacy",
    "today",
    "and",
    "let",
    "me",
    "look",
    "that",
    "up",
    "for",
    "you",
    "while",
    "we",
    "talk",
    "about",
    "your",
    "order",
    "and",
    "the",
    "delivery",
    "window",
    "that",
    "you",
    "asked",
    "about",
    "before",
]


class SlowRemote:
    """A remote-style policy that takes 50 ms: checks are always in flight."""

    name = "slow_remote"

    async def check(self, text: str) -> Verdict:
        await asyncio.sleep(0.05)
        return Verdict.allow()


class Stamp(FrameProcessor):
    """Notes when each frame passes (perf_counter) and wakes whoever waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, float] = {}
        self.arrived = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.seen[frame.id] = time.perf_counter()
        self.arrived.set()
        await self.push_frame(frame, direction)


class PassThrough(FrameProcessor):
    """An empty slot filler: the cost of one more processor hop, nothing else."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


def make_tap() -> GuardrailTap:
    return GuardrailTap(
        [DenyPolicy(words=[PHRASE, "wire transfer"]), PiiPolicy(), SlowRemote()], every_chars=100
    )


async def transit(slot: FrameProcessor | None, frames: list[Frame]) -> dict[str, list[float]]:
    """Per-frame transit (us) through [in, slot, out], one frame in flight at a time."""
    stamp_in, stamp_out = Stamp(), Stamp()
    stages = [stamp_in, *([slot] if slot is not None else []), stamp_out]
    worker = PipelineWorker(Pipeline(stages), cancel_on_idle_timeout=False, idle_timeout_secs=None)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(*_: Any) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 10)
    kinds: dict[str, list[float]] = {"audio": [], "text": []}
    for frame in frames:
        stamp_out.arrived.clear()
        await worker.queue_frame(frame)
        while frame.id not in stamp_out.seen:
            await stamp_out.arrived.wait()
            stamp_out.arrived.clear()
        us = (stamp_out.seen[frame.id] - stamp_in.seen[frame.id]) * 1e6
        if isinstance(frame, TTSAudioRawFrame):
            kinds["audio"].append(us)
        elif isinstance(frame, LLMTextFrame):
            kinds["text"].append(us)
    await worker.queue_frame(EndFrame())
    await run
    return kinds


def traffic(words: int) -> list[Frame]:
    """A realtime-like stream: a word of transcript, then five 20 ms audio chunks."""
    frames: list[Frame] = [LLMFullResponseStartFrame()]
    for i in range(words):
        frames.append(LLMTextFrame(f"{FILLER[i % len(FILLER)]} "))
        frames += [TTSAudioRawFrame(b"\x01\x00" * 480, 24_000, 1) for _ in range(5)]
    frames.append(LLMFullResponseEndFrame())
    return frames


async def cost_benchmark(rounds: int, words: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        k: {"audio": [], "text": []} for k in ("none", "passthrough", "tap")
    }
    for _ in range(rounds):  # interleaved, so machine load hits all three alike
        for name in samples:
            slot = {"none": None, "passthrough": PassThrough(), "tap": make_tap()}[name]
            got = await transit(slot, traffic(words))
            for kind in ("audio", "text"):
                samples[name][kind] += got[kind]
    out: dict[str, Any] = {}
    for name, kinds in samples.items():
        for kind, values in kinds.items():
            out[f"{name}_{kind}_us_median"] = round(statistics.median(values), 1)
            out[f"{name}_{kind}_us_p99"] = percentile(values, 99)
    for kind in ("audio", "text"):
        tap = out[f"tap_{kind}_us_median"]
        out[f"{kind}_ratio_vs_none"] = round(tap / out[f"none_{kind}_us_median"], 2)
        out[f"{kind}_ratio_vs_passthrough"] = round(tap / out[f"passthrough_{kind}_us_median"], 2)
    return out


def caller_recording(directory: Path) -> tuple[Path, float]:
    """A spoken question and 6 s of line silence; returns the file and the speech end (ms)."""
    from voxpipe.engines import make_tts

    pcm = speak(make_tts(), "What is my account password?", 16_000)
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    lead = np.zeros(16_000 * 3 // 10, dtype=np.float32)
    audio = np.concatenate([lead, speech, np.zeros(16_000 * 6, dtype=np.float32)])
    path = directory / "caller.wav"
    sf.write(str(path), audio, 16_000, subtype="PCM_16")
    return path, (len(lead) + len(speech)) / 16


class PhraseArrival(BaseObserver):
    """When the phrase's transcript delta first left the brain (on the transport's clock)."""

    def __init__(self, now_ms: Any) -> None:
        super().__init__()
        self._now = now_ms
        self.at_ms: float | None = None

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if self.at_ms is None and isinstance(frame, LLMTextFrame) and PHRASE in frame.text:
            self.at_ms = self._now()


async def one_call(
    server: Any,
    recording: Path,
    tap: GuardrailTap | None,
    stop_when: Any,
    transport: FileTransport | None = None,
    observers: list[BaseObserver] | None = None,
) -> tuple[FileTransport, Timeline]:
    transport = transport or FileTransport(recording, paced=True)
    graph = build_realtime_pipeline(
        transport, server_url=server.realtime_url, api_key=API_KEY, tap=tap
    )
    timeline = Timeline()
    observer = TimelineObserver(timeline, transport.clock.now_ms)
    watchers = [observer, *(observers or [])]
    async with CallSession(graph.pipeline, observers=watchers, end_timeout_secs=3):
        async with asyncio.timeout(20):
            while not stop_when(transport, timeline):  # noqa: ASYNC110 - polls the transport
                await asyncio.sleep(0.02)
    return transport, timeline


def on_off(first: dict[str, list[float]], runs: int) -> dict[str, Any]:
    off, on = median(first["off"]), median(first["on"])
    return {
        "first_audio_ms_off": off,
        "first_audio_ms_on": on,
        "first_audio_ratio": round(on / off, 3) if on and off else None,
        "runs": runs,
        "samples": first,
    }


async def latency_benchmark(runs: int, recording: Path, speech_end_ms: float) -> dict[str, Any]:
    brain = ScriptedBrain(["Sure, let me check that for you right away."], pace=4.0)
    first: dict[str, list[float]] = {"off": [], "on": []}
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        for _ in range(runs):
            for name in ("off", "on"):
                tap = make_tap() if name == "on" else None
                transport, _ = await one_call(srv, recording, tap, lambda t, _tl: bool(t.written))
                first[name].append(transport.written[0].at_ms - speech_end_ms)
    return on_off(first, runs)


async def chained_latency(runs: int, recording: Path, speech_end_ms: float) -> dict[str, Any]:
    """Chained graph on the local models (Whisper, Qwen, Piper): speech end -> first audio.

    Here the tap sits in the text path before the TTS, so this is where its
    word gate could add latency, if it did."""
    from voxpipe.pipelines.chained import build_chained_pipeline

    first: dict[str, list[float]] = {"off": [], "on": []}
    for run_index in range(runs + 1):  # the first round only loads the models
        for name in ("off", "on"):
            transport = FileTransport(recording, paced=True)
            graph = build_chained_pipeline(
                transport,
                instructions="Answer in one short sentence.",
                tap=make_tap() if name == "on" else None,
                voice="piper",
            )
            async with CallSession(graph.pipeline, end_timeout_secs=2):
                async with asyncio.timeout(90):
                    while not transport.written:  # noqa: ASYNC110 - polls the transport
                        await asyncio.sleep(0.02)
            if run_index > 0:
                first[name].append(transport.written[0].at_ms - speech_end_ms)
    return on_off(first, runs)


def reply_with_phrase_at(words_before: int) -> str:
    before = [FILLER[i % len(FILLER)] for i in range(words_before)]
    return " ".join([*before, PHRASE, "is", "the", "answer", "to", "that", "question."])


def phrase_start_ms(reply: str, voice: SyntheticVoice) -> float:
    at = 0.0
    for word in reply.split():
        if word.strip(".,") == PHRASE:
            return at
        at += voice.ms_per_char * len(word) + 40
    raise ValueError("no phrase")


async def stop_benchmark(
    positions: list[int], recording: Path, cadence: ScanCadence
) -> list[dict[str, Any]]:
    brain = ScriptedBrain(["placeholder"], pace=4.0)
    rows: list[dict[str, Any]] = []
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        for words_before in positions:
            reply = reply_with_phrase_at(words_before)
            brain.script = [reply]
            start = phrase_start_ms(reply, SyntheticVoice())
            tap = GuardrailTap([DenyPolicy(words=[PHRASE])], scan_cadence=cadence)

            def done(transport: FileTransport, timeline: Timeline) -> bool:
                tripped = timeline.of(EventKind.GUARDRAIL_TRIPPED)
                return bool(tripped) and any(
                    t > tripped[0].t_ms for t in transport.interruptions_ms
                )

            transport = FileTransport(recording, paced=True)
            arrival = PhraseArrival(transport.clock.now_ms)
            await one_call(srv, recording, tap, done, transport, [arrival])
            assert arrival.at_ms is not None
            trip_ms = arrival.at_ms
            stopped_ms = min(t for t in transport.interruptions_ms if t >= trip_ms)
            item = transport.written[0].utterance if transport.written else None
            chunks = [w for w in transport.written if w.utterance == item]
            played = sum(w.duration_ms for w in chunks)
            silent_at = max((w.at_ms + w.duration_ms for w in chunks), default=stopped_ms)
            rows.append(
                {
                    "cadence": cadence.value,
                    "phrase_start_ms": round(start),
                    "played_ms": round(played, 1),
                    "phrase_played_ms": round(max(0.0, played - start), 1),
                    "text_to_stop_ms": round(stopped_ms - trip_ms, 1),
                    "text_to_silence_ms": round(max(silent_at, stopped_ms) - trip_ms, 1),
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    late = [r for r in rows if r["phrase_start_ms"] >= 1000]
    return {
        "responses": len(rows),
        "phrase_played_ms_median": median([r["phrase_played_ms"] for r in rows]),
        "phrase_played_ms_max": max(r["phrase_played_ms"] for r in rows),
        "late_responses": len(late),
        "late_with_phrase_audio": sum(1 for r in late if r["phrase_played_ms"] > 0),
        "text_to_stop_ms_median": median([r["text_to_stop_ms"] for r in rows]),
        "text_to_silence_ms_median": median([r["text_to_silence_ms"] for r in rows]),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cost = await cost_benchmark(args.cost_rounds, args.cost_words)
    print_table(
        "(a) per-frame transit through the tap slot, us (median / p99)",
        ["stream", "no tap", "pass-through", "tap", "tap / no tap", "tap / pass-through"],
        [
            [
                kind,
                f"{cost[f'none_{kind}_us_median']} / {cost[f'none_{kind}_us_p99']}",
                f"{cost[f'passthrough_{kind}_us_median']} / {cost[f'passthrough_{kind}_us_p99']}",
                f"{cost[f'tap_{kind}_us_median']} / {cost[f'tap_{kind}_us_p99']}",
                cost[f"{kind}_ratio_vs_none"],
                cost[f"{kind}_ratio_vs_passthrough"],
            ]
            for kind in ("audio", "text")
        ],
    )
    with tempfile.TemporaryDirectory() as directory:
        recording, speech_end = caller_recording(Path(directory))
        latency = await latency_benchmark(args.latency_runs, recording, speech_end)
        print_table(
            "(a) realtime first audio (speech end -> first bot audio written), ms, medians",
            ["tap off", "tap on", "on / off", "runs each"],
            [
                [
                    latency["first_audio_ms_off"],
                    latency["first_audio_ms_on"],
                    latency["first_audio_ratio"],
                    latency["runs"],
                ]
            ],
        )
        chained = (
            await chained_latency(args.chained_runs, recording, speech_end)
            if args.chained_runs
            else None
        )
        if chained is not None:
            print_table(
                "(a) chained first audio on the local models, ms, medians",
                ["tap off", "tap on", "on / off", "runs each"],
                [
                    [
                        chained["first_audio_ms_off"],
                        chained["first_audio_ms_on"],
                        chained["first_audio_ratio"],
                        chained["runs"],
                    ]
                ],
            )
        positions = [
            round(i * args.max_words / (args.positions - 1)) for i in range(args.positions)
        ]
        stops = {
            cadence.value: await stop_benchmark(positions, recording, cadence)
            for cadence in (ScanCadence.WORD, ScanCadence.DEBOUNCED)
        }
    summary = {cadence: summarise(rows) for cadence, rows in stops.items()}
    print_table(
        f"(b) '{PHRASE}' at varied positions, realtime graph, local server (pace 4x)",
        [
            "cadence",
            "responses",
            "phrase ms played: median / max",
            "phrase >= 1 s in: any heard",
            "text -> audio dropped (median ms)",
            "text -> silence (median ms)",
        ],
        [
            [
                cadence,
                s["responses"],
                f"{s['phrase_played_ms_median']} / {s['phrase_played_ms_max']}",
                f"{s['late_with_phrase_audio']} of {s['late_responses']}",
                s["text_to_stop_ms_median"],
                s["text_to_silence_ms_median"],
            ]
            for cadence, s in summary.items()
        ],
    )
    return {
        "cost": cost,
        "first_audio_realtime": latency,
        "first_audio_chained": chained,
        "stopping": summary,
        "runs": stops,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cost-rounds", type=int, default=3)
    parser.add_argument("--cost-words", type=int, default=300)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--chained-runs", type=int, default=3, help="0 skips the models")
    parser.add_argument("--positions", type=int, default=22, help="responses per cadence (>= 20)")
    parser.add_argument("--max-words", type=int, default=24, help="furthest phrase position")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    path = write_result("guardrail", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
