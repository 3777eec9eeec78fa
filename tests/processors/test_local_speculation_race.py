"""A reply asked for ahead (a brain switch's re-ask) and dropped before it got going.

``speculate_reply`` starts its generation from a task (the prompt is built
first). Under load a suspected hang was cleared within a millisecond of
being suspected (``PrepareFallback`` ready, then not ready): the drop found
no speculation yet, and the start went ahead afterwards, generating a reply
nobody asked for with llama.cpp's lock held (up to ``max_tokens``); the
switch that came later waited 51 s for its re-ask's first audio
(``tests/pipelines/test_failover_faults.py``, module run at load 20).
A stand-in engine counts the generations; no model is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from pipecat.processors.aggregators.llm_context import NOT_GIVEN, LLMContext

from voxpipe.processors.local.llm import LocalLLMService

INSTRUCTIONS = "You are a voice assistant."
REASK = [{"role": "user", "content": "What is the capital of Italy?"}]


class CountingEngine:
    """Says 'Rome.' to every prompt, and counts the generations it was asked for."""

    def __init__(self) -> None:
        self.generations = 0

    def stream_openai_chunks(
        self, messages: Any, tools: Any, *, stop: threading.Event | None = None, **_: Any
    ) -> Iterator[dict[str, Any]]:
        self.generations += 1
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for text in ("Rome", "."):
            delta = {"role": "assistant", "content": text}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


async def test_a_speculation_dropped_before_it_started_never_generates() -> None:
    engine = CountingEngine()
    service = LocalLLMService(engine=engine, instructions=INSTRUCTIONS)  # type: ignore[arg-type]
    start = service.speculate_reply(list(REASK), INSTRUCTIONS, NOT_GIVEN)
    await service.drop_speculation()  # the hang was cleared before the start ran
    await start
    assert service._speculation is None
    assert service.speculations.started == 0
    assert engine.generations == 0


async def test_the_reply_asked_as_the_speculation_starts_replays_it() -> None:
    engine = CountingEngine()
    service = LocalLLMService(engine=engine, instructions=INSTRUCTIONS)  # type: ignore[arg-type]
    service.speculate_reply(list(REASK), INSTRUCTIONS, NOT_GIVEN)
    # The switch asks at once, before the speculation's start has run: the same prompt.
    chunks = await service.get_chat_completions(LLMContext(messages=list(REASK)))  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text == "Rome."
    stats = service.speculations
    assert (stats.started, stats.used, stats.dropped) == (1, 1, 0)
    assert engine.generations == 1  # one generation, not a speculation beside the reply
