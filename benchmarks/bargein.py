"""Benchmark barge-in on the realtime path: voxpipe's service vs pipecat's stock one.

Both run the same graph (file transport, paced, -> user aggregator -> service ->
[tap] -> output) against voxpipe's realtime server on loopback (scripted brain,
streaming 1.5x real time, server VAD on), one after the other, in the same run.

(a) Barge-in: a caller who talks over every answer (>= 20 times). Per barge-in:
    - stop latency: the caller's speech onset in the input audio -> the end of
      the last bot audio out (server VAD detection included, same for both);
    - truncation error: |audio_end_ms sent in conversation.item.truncate -
      ms of the item the output transport really played|;
    - bot audio chunks (20 ms) written after the transport took the
      interruption, and audio frames the brain pushed after it passed the
      interruption on (pipecat's output may still write the one chunk it had
      already taken: that shows in the first figure, not the second).
(b) Guardrail-style interrupt: a processor after the brain calls
    ``broadcast_interruption()`` after 10 frames of every answer (server VAD
    on); frames of that answer still reaching the output afterwards, and
    whether ``response.cancel`` went out.

Prints tables and writes benchmarks/results/bargein.json (medians, p95, ratios).
Run: ``.venv/bin/python benchmarks/bargein.py [--barge-ins 21] [--cuts 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import median, percentile, print_table, speak, write_result
from pipecat.frames.frames import Frame, InterruptionFrame, TTSAudioRawFrame, TTSStartedFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime import events as rt
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import InterruptionHandled, ItemTruncated, RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

KEY = "bench-key"
RATE = 16_000
ANSWER = (
    "Our pharmacy opens at nine in the morning on Saturday and closes at one in the "
    "afternoon, and on Sunday we are closed all day, but the pharmacy on Market Street "
    "stays open until six in the evening every single day of the week."
)
BARGE_INS = [
    "Sorry, one more thing.",
    "Wait, hold on please.",
    "No, actually, listen.",
    "Hang on a second.",
    "Excuse me, sorry.",
    "Let me stop you there.",
    "Sorry to interrupt.",
]
PACE = 1.5  # the provider streams a little faster than playback
GAP_MS = 2000  # silence after each line: the answer starts ~0.6 s in, the caller cuts at ~1.4 s


@dataclass
class Recording:
    path: Path
    spans: list[tuple[int, int]]  # (start_ms, end_ms) of each spoken line


def make_recording(voice: Any, lines: list[str], gap_ms: int, path: Path) -> Recording:
    pieces, spans, at = [np.zeros(RATE * 300 // 1000, dtype="<i2")], [], 300
    for text in lines:
        audio = np.frombuffer(speak(voice, text, RATE), dtype="<i2")
        spans.append((at, at + len(audio) * 1000 // RATE))
        pieces += [audio, np.zeros(RATE * gap_ms // 1000, dtype="<i2")]
        at += (len(audio) + RATE * gap_ms // 1000) * 1000 // RATE
    pieces.append(np.zeros(RATE * 3, dtype="<i2"))
    sf.write(str(path), np.concatenate(pieces), RATE, subtype="PCM_16")
    return Recording(path, spans)


class StockRecording(OpenAIRealtimeLLMService):
    """pipecat's stock service, unchanged, with its outgoing events noted (the baseline)."""

    def __init__(self, clock: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.sent: list[tuple[float, Any]] = []

    async def send_client_event(self, event: Any) -> None:
        self.sent.append((self.clock() if self.clock else 0.0, event))
        await super().send_client_event(event)


class CutEveryAnswer(FrameProcessor):
    """A guardrail stand-in: interrupts after ``n`` audio frames of every answer."""

    def __init__(self, n: int, clock: Any) -> None:
        super().__init__()
        self.n, self.clock = n, clock
        self.seen = 0
        self.cut = False
        self.cuts: list[float] = []
        self.starts: list[float] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSStartedFrame):
            self.seen, self.cut = 0, False
            self.starts.append(self.clock())
        if isinstance(frame, TTSAudioRawFrame) and not self.cut:
            self.seen += 1
            if self.seen == self.n:
                self.cut = True
                self.cuts.append(self.clock())
                await self.broadcast_interruption()
                return  # the frame that tripped it is not spoken
        await self.push_frame(frame, direction)


class BrainPushes(BaseObserver):
    """When the brain pushed audio and interruptions downstream (the transport's clock)."""

    def __init__(self, brain: Any, clock: Any) -> None:
        super().__init__()
        self.brain, self.clock = brain, clock
        self.audio: list[float] = []
        self.interruptions: list[float] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is not self.brain or data.direction is not FrameDirection.DOWNSTREAM:
            return
        if isinstance(data.frame, TTSAudioRawFrame):
            self.audio.append(self.clock())
        elif isinstance(data.frame, InterruptionFrame):
            self.interruptions.append(self.clock())


@dataclass
class Run:
    transport: FileTransport
    pushes: BrainPushes
    truncates: list[tuple[float, int]] = field(default_factory=list)  # (t, audio_end_ms)
    cancels: int = 0
    tap: CutEveryAnswer | None = None


async def run_call(stock: bool, recording: Recording, cut_after: int | None) -> Run:
    brain = ScriptedBrain([ANSWER], pace=PACE)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        transport = FileTransport(recording.path, paced=True)
        clock = transport.clock.now_ms
        tap = CutEveryAnswer(cut_after, clock) if cut_after else None
        factory = (lambda **kw: StockRecording(clock=clock, **kw)) if stock else None
        graph = build_realtime_pipeline(
            transport, server_url=srv.realtime_url, api_key=KEY, tap=tap, brain=factory
        )
        service = graph.brain
        run = Run(transport, BrainPushes(service, clock), tap=tap)
        if isinstance(service, RealtimeService):

            @service.event_handler("on_call_event")
            async def _on_event(_s: Any, event: Any) -> None:
                if isinstance(event, ItemTruncated):
                    run.truncates.append((clock(), event.audio_end_ms))
                elif isinstance(event, InterruptionHandled) and event.cancel_sent:
                    run.cancels += 1

        finished = asyncio.Event()

        @transport.event_handler("on_input_finished")
        async def _done(_t: Any) -> None:
            finished.set()

        async with CallSession(graph.pipeline, observers=[run.pushes], end_timeout_secs=5):
            await finished.wait()
            await asyncio.sleep(1.0)
        if isinstance(service, StockRecording):
            for t, event in service.sent:
                if isinstance(event, rt.ConversationItemTruncateEvent):
                    run.truncates.append((t, event.audio_end_ms))
                elif isinstance(event, rt.ResponseCancelEvent):
                    run.cancels += 1
        return run


def barge_in_metrics(run: Run, recording: Recording) -> list[dict[str, float | None]]:
    t = run.transport
    origin = t.input_started_ms
    written = sorted(t.written, key=lambda w: w.at_ms)
    rows = []
    for k in range(1, len(recording.spans)):
        # The answer being cut is the one to the previous line: it starts after that line.
        prev_end = origin + recording.spans[k - 1][1]
        onset, line_end = origin + recording.spans[k][0], origin + recording.spans[k][1]
        answer = [w for w in written if prev_end < w.at_ms < line_end]
        stops = [x for x in t.interruptions_ms if x > onset]
        if not answer or not stops or stops[0] > line_end + 2000:
            rows.append(
                {"stop_ms": None, "trunc_err_ms": None, "frames_after": None, "pushed_after": None}
            )
            continue
        # Audio the brain itself pushed after it passed the interruption on.
        cut_at = next((x for x in run.pushes.interruptions if x > onset), None)
        pushed_after = 0
        if cut_at is not None:
            pushed_after = sum(1 for a in run.pushes.audio if cut_at < a < line_end)
        t_int = stops[0]
        played = sum(min(w.duration_ms, max(0.0, t_int - w.at_ms)) for w in answer)
        last_out = max(min(w.at_ms + w.duration_ms, max(t_int, w.at_ms)) for w in answer)
        after = sum(1 for w in answer if w.at_ms > t_int)
        cut = next((end for when, end in run.truncates if when >= onset - 50), None)
        rows.append(
            {
                "stop_ms": round(last_out - onset, 1),
                "trunc_err_ms": None if cut is None else round(abs(cut - played), 1),
                "frames_after": float(after),
                "pushed_after": float(pushed_after),
            }
        )
    return rows


def cut_metrics(run: Run, recording: Recording) -> list[int]:
    """Per answer: bot audio chunks written after the first guardrail cut, until the next line."""
    assert run.tap is not None
    origin = run.transport.input_started_ms
    ends = [origin + end for _, end in recording.spans]
    nexts = [origin + start for start, _ in recording.spans[1:]] + [float("inf")]
    leaks = []
    for end, nxt in zip(ends, nexts, strict=True):
        cut = next((c for c in run.tap.cuts if end < c < nxt), None)
        if cut is not None:
            stop = next((x for x in run.transport.interruptions_ms if x >= cut), cut)
            leaks.append(sum(1 for w in run.transport.written if stop < w.at_ms < nxt))
    return leaks


def summarise(rows: list[dict[str, float | None]]) -> dict[str, Any]:
    def col(name: str) -> list[float]:
        return [r[name] for r in rows if r[name] is not None]  # type: ignore[misc]

    stops, errors, after = col("stop_ms"), col("trunc_err_ms"), col("frames_after")
    pushed = col("pushed_after")
    return {
        "barge_ins": len(rows),
        "measured": len(stops),
        "stop_p50_ms": median(stops),
        "stop_p95_ms": percentile(stops, 95),
        "trunc_err_max_ms": max(errors) if errors else None,
        "trunc_err_p50_ms": median(errors),
        "frames_after_interruption": int(sum(after)),
        "brain_audio_pushed_after_interruption": int(sum(pushed)),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from voxpipe.engines import make_tts

    voice = make_tts()
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["What time do you open on Saturday?"]
        lines += [BARGE_INS[i % len(BARGE_INS)] for i in range(args.barge_ins)]
        barge = make_recording(voice, lines, GAP_MS, Path(tmp) / "barge.wav")
        questions = [f"Question number {i + 1}, when do you open?" for i in range(args.cuts)]
        quiet = make_recording(voice, questions, 5000, Path(tmp) / "cuts.wav")
        results: dict[str, Any] = {}
        for name, stock in (("voxpipe", False), ("pipecat_stock", True)):
            calls = await run_call(stock, barge, None)
            results[name] = summarise(barge_in_metrics(calls, barge))
            results[name]["response_cancels_sent"] = calls.cancels
            cuts = await run_call(stock, quiet, 10)
            per_cut = cut_metrics(cuts, quiet)
            results[name]["guardrail_cuts"] = len(per_cut)
            results[name]["guardrail_frames_after_p50"] = median([float(x) for x in per_cut])
            results[name]["guardrail_frames_after_total"] = sum(per_cut)
            results[name]["guardrail_cancels_sent"] = cuts.cancels
    ours, stock = results["voxpipe"], results["pipecat_stock"]
    results["ratios_voxpipe_over_stock"] = {
        "stop_p50": ratio(ours["stop_p50_ms"], stock["stop_p50_ms"]),
        "stop_p95": ratio(ours["stop_p95_ms"], stock["stop_p95_ms"]),
        "trunc_err_max": ratio(ours["trunc_err_max_ms"], stock["trunc_err_max_ms"]),
        "guardrail_frames_after": ratio(
            ours["guardrail_frames_after_total"], stock["guardrail_frames_after_total"]
        ),
    }
    return results


def report(results: dict[str, Any]) -> None:
    keys = [
        ("barge-ins measured", "measured"),
        ("stop latency p50 (ms)", "stop_p50_ms"),
        ("stop latency p95 (ms)", "stop_p95_ms"),
        ("truncation error max (ms)", "trunc_err_max_ms"),
        ("truncation error p50 (ms)", "trunc_err_p50_ms"),
        ("bot chunks written after interruption", "frames_after_interruption"),
        ("audio frames the brain pushed after it", "brain_audio_pushed_after_interruption"),
        ("response.cancel sent (barge-ins)", "response_cancels_sent"),
        ("guardrail cuts", "guardrail_cuts"),
        ("guardrail: frames after cut (total)", "guardrail_frames_after_total"),
        ("guardrail: frames after cut (p50)", "guardrail_frames_after_p50"),
        ("guardrail: response.cancel sent", "guardrail_cancels_sent"),
    ]
    rows = [[label, results["voxpipe"][k], results["pipecat_stock"][k]] for label, k in keys]
    print_table(
        "Barge-in, realtime path (same run, same server)", ["", "voxpipe", "pipecat stock"], rows
    )
    print_table(
        "voxpipe / stock",
        ["metric", "ratio"],
        [[k, v] for k, v in results["ratios_voxpipe_over_stock"].items()],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--barge-ins", type=int, default=21)
    parser.add_argument("--cuts", type=int, default=8)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()  # pipecat logs every frame at DEBUG
    logger.add(sys.stderr, level="WARNING")
    results = asyncio.run(run(args))
    report(results)
    path = write_result("bargein", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
