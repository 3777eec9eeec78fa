"""One chained turn on the embedded stack, streamed vs naive; and batch real-time factor.

Streamed (voxpipe's turn, ``voxpipe.engines.reply.run_turn``): Whisper on the
utterance, LLM tokens cut into pieces of speech (a first clause, then
sentences) and synthesised as they are cut, first audio from the first piece.
Naive baseline, same process, same engines and inputs: whole STT, then the
whole LLM reply, then TTS of the whole reply. Timings start at the end of the
caller's speech (the utterance is handed over whole), so ``first audio`` is
end-of-speech -> first audio byte, excluding the VAD's end-of-turn wait
(reported separately by the voice-to-voice benchmark).

    python benchmarks/chained_turn.py [--turns 8]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import soundfile as sf
from _common import QUESTIONS, median, print_table, speak, write_result

from voxpipe.engines import LocalEngines, shared_engines
from voxpipe.engines.reply import run_turn
from voxpipe.evaluation import word_error_rate
from voxpipe.pipelines.batch import run_batch
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS


def naive_turn(engines: LocalEngines, pcm: bytes) -> dict[str, float]:
    start = time.perf_counter()
    text = engines.stt.transcribe(pcm, 16_000)
    stt = time.perf_counter()
    messages = [
        {"role": "system", "content": DEFAULT_INSTRUCTIONS},
        {"role": "user", "content": text},
    ]
    reply = "".join(c.text for c in engines.llm.stream_chat(messages, max_tokens=120))
    llm = time.perf_counter()
    next(iter(engines.tts.synthesize(reply)), b"")
    first_audio = time.perf_counter()
    return {
        "stt_ms": (stt - start) * 1000,
        "llm_done_ms": (llm - start) * 1000,
        "first_audio_ms": (first_audio - start) * 1000,
    }


async def main(turns: int) -> None:
    engines = await shared_engines()
    texts = (QUESTIONS * 3)[:turns]
    clips = [speak(engines.tts, q) for q in texts]
    await run_turn(engines, clips[0], instructions=DEFAULT_INSTRUCTIONS)  # warm up
    streamed, naive, wers = [], [], []
    for text, pcm in zip(texts, clips, strict=True):
        result = await run_turn(engines, pcm, instructions=DEFAULT_INSTRUCTIONS)
        streamed.append(result.timings)
        wers.append(word_error_rate(text, result.transcript))
        naive.append(await asyncio.to_thread(naive_turn, engines, pcm))

    def col(rows: list[dict[str, float]], key: str) -> float | None:
        return median([r.get(key) for r in rows])  # type: ignore[misc]

    stages = [
        "stt_ms",
        "llm_first_token_ms",
        "llm_first_piece_ms",
        "llm_done_ms",
        "first_audio_ms",
    ]
    rows = [[s, col(streamed, s), col(naive, s)] for s in stages]
    s_first, n_first = col(streamed, "first_audio_ms"), col(naive, "first_audio_ms")
    ratio = round(s_first / n_first, 2) if s_first and n_first else None
    rows.append(["first audio: streamed / naive", ratio, 1.0])
    mean_wer = round(sum(wers) / len(wers), 3)
    rows.append(["STT word error rate (mean)", mean_wer, mean_wer])
    print_table(
        f"Chained turn, median of {turns} turns (ms from end of speech)",
        ["stage", "voxpipe streamed", "naive baseline"],
        rows,
    )

    batch = await batch_rtf(engines, clips)
    print_table(
        "Batch over a folder",
        ["files", "audio s", "elapsed s", "real-time factor"],
        [[batch["files"], batch["audio_s"], batch["elapsed_s"], batch["rtf"]]],
    )
    path = write_result(
        "chained_turn",
        {
            "turns": turns,
            "streamed_median_ms": {s: col(streamed, s) for s in stages},
            "naive_median_ms": {
                s: col(naive, s) for s in ["stt_ms", "llm_done_ms", "first_audio_ms"]
            },
            "first_audio_ratio_streamed_over_naive": ratio,
            "stt_wer_mean": mean_wer,
            "batch": batch,
            "raw": {"streamed": streamed, "naive": naive},
        },
    )
    print(f"wrote {path}")


async def batch_rtf(engines: LocalEngines, clips: list[bytes]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        import numpy as np

        for i, pcm in enumerate(clips):
            sf.write(str(folder / f"q{i}.wav"), np.frombuffer(pcm, dtype="<i2"), 16_000)
        summary = await run_batch(folder, Path(tmp) / "out", engines=engines)
    audio_s = sum(i.audio_ms for i in summary.items) / 1000
    elapsed_s = sum(i.elapsed_ms for i in summary.items) / 1000
    return {
        "files": len(clips),
        "audio_s": round(audio_s, 2),
        "elapsed_s": round(elapsed_s, 2),
        "rtf": round(summary.real_time_factor or 0, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=8)
    asyncio.run(main(parser.parse_args().turns))
