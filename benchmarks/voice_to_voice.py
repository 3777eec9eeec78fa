"""Voice-to-voice latency on the embedded stack: true end of speech -> first bot audio out.

A recording of N spoken turns (generated speech, varied sentences, some with
mid-sentence pauses) is played in real time through the file transport into
the chained graph; for each turn the time from the true end of the caller's
speech in the input audio to the first bot audio chunk written by the output
transport is measured, with the per-stage split (end-of-turn wait, STT, LLM
first token, TTS first audio). Premature end of turn: the bot's turn began
before the caller finished the sentence. Baseline in the same run: the naive
sequential turn (whole STT, whole LLM reply, then TTS) on the same clips,
which excludes end-of-turn detection entirely (so the ratio flatters it).

    python benchmarks/voice_to_voice.py [--turns 20] [--calls 1]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import median, percentile, print_table, speak, write_result
from chained_turn import naive_turn
from pipecat.frames.frames import (
    LLMTextFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.local.engines import LocalEngines, shared_engines
from voxpipe.transports.file import FileTransport

SENTENCES = [
    "What time does the pharmacy open on Saturday?",
    "Hi, I would like to know if my prescription is ready.",
    "Which planet is closest to the sun?",
    "Can you tell me, roughly, how long delivery takes?",
    "What is the capital city of Canada?",
    "I lost my card, what should I do?",
    "How many minutes are there in a day?",
    "Is it going to rain in Paris tomorrow?",
    "Please, could you repeat the opening hours?",
    "What is two plus two?",
    "Do you sell vitamin D tablets?",
    "My name is Anna, and I have a question about my order.",
    "How do I reset my password?",
    "What is the tallest mountain in the world?",
    "Can I pay by card at the counter?",
    "Where is the nearest train station?",
    "Thanks, and what about Sunday?",
    "How long should I boil an egg?",
    "What language is spoken in Brazil?",
    "Could you book me an appointment for Monday morning?",
]
GAP_MS = 6_000


class Stamps(BaseObserver):
    """When each stage happened (transport clock, ms)."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self.now = now
        self.events: dict[str, list[float]] = {}

    async def on_push_frame(self, data: FramePushed) -> None:
        if not data.first_push:
            return
        kinds = {
            VADUserStoppedSpeakingFrame: "vad_stop",
            TranscriptionFrame: "transcript",
            UserStoppedSpeakingFrame: "turn_end",
            LLMTextFrame: "llm_text",
        }
        for cls, name in kinds.items():
            if isinstance(data.frame, cls):
                self.events.setdefault(name, []).append(self.now())


def first_after(times: list[float], t: float, before: float) -> float | None:
    return next((x for x in sorted(times) if t <= x < before), None)


async def one_call(recording: Path, ends: list[float]) -> list[dict[str, float | None]]:
    transport = FileTransport(recording, paced=True)
    graph = build_chained_pipeline(transport)
    stamps = Stamps(now=transport.clock.now_ms)
    finished = asyncio.Event()

    @transport.event_handler("on_input_finished")
    async def _done(_t: FileTransport) -> None:
        finished.set()

    async with CallSession(graph.pipeline, observers=[stamps]):
        await finished.wait()
    origin = transport.input_started_ms
    audio = [w.at_ms - origin for w in transport.written]
    ev = {k: [t - origin for t in v] for k, v in stamps.events.items()}
    rows = []
    for i, end in enumerate(ends):
        limit = ends[i + 1] - 3_000 if i + 1 < len(ends) else float("inf")
        start = end - 4_000  # the sentence began before its end
        first_audio = first_after(audio, end - 2_000, limit)
        turn_end = first_after(ev.get("turn_end", []), start, limit)
        row = {
            "first_audio_ms": None if first_audio is None else first_audio - end,
            "turn_end_ms": None if turn_end is None else turn_end - end,
            "vad_stop_ms": _rel(first_after(ev.get("vad_stop", []), end - 500, limit), end),
            "transcript_ms": _rel(first_after(ev.get("transcript", []), end, limit), end),
            "llm_first_text_ms": _rel(first_after(ev.get("llm_text", []), end, limit), end),
            "premature": 1.0 if turn_end is not None and turn_end < end else 0.0,
        }
        rows.append(row)
    return rows


def _rel(t: float | None, end: float) -> float | None:
    return None if t is None else t - end


def make_recording(
    engines: LocalEngines, folder: Path, turns: int
) -> tuple[Path, list[float], list[bytes]]:
    parts, ends, clips, cursor = [np.zeros(8_000, dtype="<i2")], [], [], 500.0
    for text in (SENTENCES * 3)[:turns]:
        pcm = speak(engines.tts, text)
        clips.append(pcm)
        samples = np.frombuffer(pcm, dtype="<i2")
        cursor += samples.size / 16
        ends.append(cursor)
        parts += [samples, np.zeros(16 * GAP_MS, dtype="<i2")]
        cursor += GAP_MS
    path = folder / "caller.wav"
    sf.write(str(path), np.concatenate(parts), 16_000)
    return path, ends, clips


async def main(turns: int, calls: int) -> None:
    engines = await shared_engines()
    with tempfile.TemporaryDirectory() as tmp:
        recording, ends, clips = make_recording(engines, Path(tmp), turns)
        results = await asyncio.gather(*(one_call(recording, ends) for _ in range(calls)))
    rows = [r for call in results for r in call]
    naive = [await asyncio.to_thread(naive_turn, engines, pcm) for pcm in clips]
    v2v = [r["first_audio_ms"] for r in rows]
    naive_first = [n["first_audio_ms"] for n in naive]
    answered = [x for x in v2v if x is not None]
    stages = ["vad_stop_ms", "turn_end_ms", "transcript_ms", "llm_first_text_ms", "first_audio_ms"]
    table = [
        [s, median([r[s] for r in rows]), percentile([r[s] for r in rows], 95)] for s in stages
    ]
    table.append(
        ["naive sequential (no end-of-turn wait)", median(naive_first), percentile(naive_first, 95)]
    )
    p50, n50 = median(v2v), median(naive_first)
    table.append(
        ["ratio voxpipe / naive (p50)", round(p50 / n50, 2) if p50 and n50 else None, None]
    )
    premature = sum(r["premature"] or 0 for r in rows) / len(rows)
    table.append(["premature end of turn", f"{premature:.0%}", None])
    table.append(["turns answered", f"{len(answered)}/{len(rows)}", None])
    print_table(
        f"Voice to voice, chained path, {turns} turns x {calls} concurrent call(s) "
        "(ms after the true end of speech)",
        ["stage", "p50", "p95"],
        table,
    )
    path = write_result(
        f"voice_to_voice_chained_{calls}call",
        {
            "turns": turns,
            "calls": calls,
            "p50_ms": p50,
            "p95_ms": percentile(v2v, 95),
            "naive_p50_ms": n50,
            "premature_rate": premature,
            "answered": len(answered),
            "stages_p50": {s: median([r[s] for r in rows]) for s in stages},
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.calls))
