"""One streamed chained turn over the shared engines, with its stage timings.

Used where a whole recording is one turn (``voxpipe batch``) and by the
benchmarks: Whisper on the utterance, LLM tokens streamed into sentence-level
TTS, so the first audio comes from the first sentence, not the whole reply.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from pipecat.utils.string import match_endofsentence

from voxpipe.engines import LocalEngines
from voxpipe.engines.in_thread import iterate_in_thread


@dataclass
class TurnResult:
    """What was heard, what was said back, and how long each stage took (ms)."""

    transcript: str
    reply: str
    reply_pcm: bytes
    reply_rate: int
    timings: dict[str, float] = field(default_factory=dict)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


async def run_turn(
    engines: LocalEngines,
    pcm16_16k: bytes,
    *,
    instructions: str,
    history: list[dict[str, Any]] | None = None,
    max_tokens: int = 120,
) -> TurnResult:
    """Transcribe, answer and speak one utterance; timings are from the call's start."""
    start = time.perf_counter()
    transcript = await asyncio.to_thread(engines.stt.transcribe, pcm16_16k, 16_000)
    timings = {"stt_ms": _ms(start)}
    if not transcript:
        return TurnResult("", "", b"", engines.tts.sample_rate, timings)
    messages = [
        {"role": "system", "content": instructions},
        *(history or []),
        {"role": "user", "content": transcript},
    ]
    sentences: asyncio.Queue[str | None] = asyncio.Queue()
    reply_parts: list[str] = []
    speaker = asyncio.create_task(_speak(engines, sentences, start, timings))
    try:
        await _think(engines, messages, max_tokens, sentences, reply_parts, start, timings)
    finally:
        await sentences.put(None)
    pcm = await speaker
    timings["total_ms"] = _ms(start)
    return TurnResult(
        transcript, "".join(reply_parts).strip(), pcm, engines.tts.sample_rate, timings
    )


async def _think(
    engines: LocalEngines,
    messages: list[dict[str, Any]],
    max_tokens: int,
    sentences: asyncio.Queue[str | None],
    reply_parts: list[str],
    start: float,
    timings: dict[str, float],
) -> None:
    chunks = iterate_in_thread(
        lambda stop: engines.llm.stream_chat(messages, max_tokens=max_tokens, stop=stop)
    )
    pending = ""
    async for chunk in chunks:
        piece = chunk.text
        timings.setdefault("llm_first_token_ms", _ms(start))
        reply_parts.append(piece)
        pending += piece
        while end := match_endofsentence(pending):
            timings.setdefault("llm_first_sentence_ms", _ms(start))
            await sentences.put(pending[:end])
            pending = pending[end:]
    if pending.strip():
        timings.setdefault("llm_first_sentence_ms", _ms(start))
        await sentences.put(pending)
    timings["llm_done_ms"] = _ms(start)


async def _speak(
    engines: LocalEngines,
    sentences: asyncio.Queue[str | None],
    start: float,
    timings: dict[str, float],
) -> bytes:
    audio = bytearray()
    while (sentence := await sentences.get()) is not None:
        chunks = engines.tts.synthesize(sentence)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            timings.setdefault("first_audio_ms", _ms(start))
            audio += chunk
    timings["tts_done_ms"] = _ms(start)
    return bytes(audio)
