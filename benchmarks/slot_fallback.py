"""What a chained slot's fallback costs: time to the answer's first text when the first LLM fails.

The same question is asked of the chained LLM slot (``FallbackLLMService``)
in four set-ups, in turns (a loaded machine drifts), against the local model
alone as the baseline measured in the same run:

- ``llama alone``: the local model, no fallback (the baseline);
- ``missing GGUF first``: a llama.cpp engine whose model file does not exist, then the local model;
- ``stalled provider first``: the OpenAI stand-in holding its answer past a 1 s deadline;
- ``provider drops after 3 words``: the stand-in cuts the stream mid-answer, and
  ``retry_after_partial`` hands the turn to the local model, which starts again.

Each request gets a fresh slot (no engine benched), so every row pays its
handoff. A last row keeps one slot for all its requests, as one call does, with
the default policy (``trip_after = 2``): the stalled provider costs its
deadline twice, then is benched and the local model answers at once. The
set-ups take turns request by request, so each sees the same load and the same
warm KV cache of the (identical) prompt. Times are from the request to
the first text of the engine that answered (ms).

    python benchmarks/slot_fallback.py [--requests 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import median, percentile, print_table, write_result
from pipecat.processors.aggregators.llm_context import LLMContext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from fake_openai import API_KEY, running_fake_openai  # noqa: E402

from voxpipe.processors.slot_fallback import FallbackLLMService  # noqa: E402
from voxpipe.processors.slot_members import chat_source  # noqa: E402
from voxpipe.slot_config import EngineKind, EngineSpec  # noqa: E402
from voxpipe.slot_fallback import FallbackPolicy, Slot, SlotEvent, SlotFallback  # noqa: E402

INSTRUCTIONS = "You are a shop's phone assistant. Answer in one short sentence."
QUESTION = "When do you open on Saturday?"
DEADLINE_MS = 1000
LLAMA = EngineSpec(EngineKind.LLAMA, "llama")
BENCHED = "stalled provider, benched after 2"


class TimedLLM(FallbackLLMService):
    """The slot's LLM service outside a pipeline: its events are kept, not pushed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[SlotEvent] = []

    async def _announce(self, event: SlotEvent) -> None:
        self.events.append(event)


def slot(engines: Sequence[EngineSpec], *, retry: bool = False, trip_after: int = 10_000) -> Any:
    policy = FallbackPolicy(deadline_ms=60_000, retry_after_partial=retry, trip_after=trip_after)
    fallback = SlotFallback(Slot.LLM, [e.name for e in engines], policy, {"openai": DEADLINE_MS})
    sources = [chat_source(e, instructions=INSTRUCTIONS, api_key=API_KEY) for e in engines]
    return TimedLLM(sources, fallback, instructions=INSTRUCTIONS)


async def first_text_ms(llm: TimedLLM, handoffs: int) -> float:
    """From the request to the first text after its ``handoffs`` handoffs (the answering engine)."""
    context = LLMContext(messages=[{"role": "user", "content": QUESTION}])
    before = len(llm.events)
    start = time.perf_counter()
    stream = await llm.get_chat_completions(context)
    try:
        async for chunk in stream:
            handed = len(llm.events) - before
            if handed == handoffs and chunk.choices and chunk.choices[0].delta.content:
                return (time.perf_counter() - start) * 1000
    finally:
        await stream.aclose()
    raise RuntimeError(f"no answer after {handoffs} handoffs: {llm.events[before:]}")


def _handoffs_due(llm: TimedLLM) -> int:
    """Handoffs a request to ``llm`` will see: one per engine before the last, unless benched."""
    fallback = llm.slot.fallback
    benched = fallback.benched(llm.slot.clock())
    return len([e for e in fallback.engines[:-1] if e not in benched])


async def main(requests: int) -> None:
    gone = Path(tempfile.mkdtemp()) / "missing.gguf"
    async with running_fake_openai() as stalled, running_fake_openai() as dropping:
        stalled.chat_stall_secs = 3
        dropping.chat_cut_after_words = 3
        setups = {
            "llama alone": lambda: slot([LLAMA]),
            "missing GGUF first": lambda: slot(
                [EngineSpec(EngineKind.LLAMA, "llama-gone", str(gone)), LLAMA]
            ),
            "stalled provider first": lambda: _at(stalled.url, lambda: slot([_openai(), LLAMA])),
            "provider drops after 3 words": lambda: _at(
                dropping.url, lambda: slot([_openai(), LLAMA], retry=True)
            ),
        }
        kept = _at(stalled.url, lambda: slot([_openai(), LLAMA], trip_after=2))
        setups[BENCHED] = lambda: kept  # one slot for every request, as in one call
        await first_text_ms(setups["llama alone"](), 0)  # load the model, warm its cache
        times: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(requests):
            for name, build in setups.items():
                llm = build()
                times[name].append(await first_text_ms(llm, _handoffs_due(llm)))

    base = median(times["llama alone"]) or 1.0
    rows, results = [], {}
    for name, values in times.items():
        med, p95 = median(values), percentile(values, 95)
        ratio = round(med / base, 2) if med is not None else None
        rows.append([name, len(values), med, p95, ratio])
        results[name] = {"ms": [round(v, 1) for v in values], "median": med, "p95": p95}
    print_table(
        f"LLM slot: request to the answering engine's first text (deadline {DEADLINE_MS} ms)",
        ["set-up", "n", "median ms", "p95 ms", "x llama alone"],
        rows,
    )
    path = write_result(
        "slot_fallback", {"deadline_ms": DEADLINE_MS, "question": QUESTION, "results": results}
    )
    print(f"wrote {path}")


def _openai() -> EngineSpec:
    return EngineSpec(EngineKind.OPENAI, "openai", "gpt-4.1")


def _at(url: str, build: Any) -> Any:
    """Build a slot whose OpenAI client talks to the stand-in at ``url``."""
    os.environ["OPENAI_BASE_URL"] = url
    return build()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10)
    asyncio.run(main(parser.parse_args().requests))
