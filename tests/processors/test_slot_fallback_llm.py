"""The LLM slot with fallback: a remote provider in trouble, the local model behind it.

The remote provider is the loopback stand-in for OpenAI's chat completions
(the paid provider; it streams as the real endpoint does and can stall or drop
the connection mid-answer); the engine behind it is the real local model, and
a model path that does not exist fails for real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fake_openai import API_KEY, REPLY, FakeOpenAI, running_fake_openai
from pipecat.frames.frames import ErrorFrame, LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from voxpipe.frames import SlotFallbackFrame
from voxpipe.processors.slot_fallback import FallbackLLMService
from voxpipe.processors.slot_members import chat_source
from voxpipe.slot_config import EngineKind, EngineSpec
from voxpipe.slot_fallback import (
    FallbackPolicy,
    GaveUp,
    HandedOff,
    HandoffReason,
    Slot,
    SlotEvent,
    SlotFallback,
)

pytestmark = pytest.mark.models

INSTRUCTIONS = "You are a shop's phone assistant. Answer in one short sentence."
OPENAI = EngineSpec(EngineKind.OPENAI, "openai", "gpt-4.1")
LLAMA = EngineSpec(EngineKind.LLAMA, "llama")


def service(
    engines: Sequence[EngineSpec], *, retry_after_partial: bool = False, deadline_ms: int = 20_000
) -> FallbackLLMService:
    sources = [chat_source(e, instructions=INSTRUCTIONS, api_key=API_KEY) for e in engines]
    policy = FallbackPolicy(deadline_ms=deadline_ms, retry_after_partial=retry_after_partial)
    # The stand-in's deadline is short; the local model's is long (a loaded 2-core machine).
    fallback = SlotFallback(Slot.LLM, [e.name for e in engines], policy, {"openai": 1500})
    return FallbackLLMService(sources, fallback, instructions=INSTRUCTIONS)


async def ask(llm: FallbackLLMService) -> tuple[str, list[SlotEvent], list[ErrorFrame]]:
    context = LLMContext(messages=[{"role": "user", "content": "When do you open on Saturday?"}])
    down, up = await run_test(llm, frames_to_send=[LLMContextFrame(context)], start_timeout=30)
    return (
        "".join(f.text for f in down if isinstance(f, LLMTextFrame)),
        [f.event for f in down if isinstance(f, SlotFallbackFrame)],
        [f for f in [*down, *up] if isinstance(f, ErrorFrame)],
    )


@pytest.fixture
async def provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with running_fake_openai() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
        yield fake


async def test_an_answer_that_broke_midway_is_not_started_again(provider: FakeOpenAI) -> None:
    provider.chat_cut_after_words = 3
    llm = service([OPENAI, LLAMA])
    text, events, errors = await ask(llm)

    # The caller keeps the words already said; the local model is never asked.
    assert text == "We open at"
    (event,) = events
    assert isinstance(event, GaveUp) and event.partial
    assert [f.engine for f in event.failures] == ["openai"]
    (error,) = errors
    assert "openai broke after it had started answering" in str(error.error)
    assert "retry_after_partial" in str(error.error)
    assert len(provider.chats) == 1
    assert llm.is_usable  # the next turn is asked again


async def test_retry_after_partial_hands_the_broken_answer_to_the_next_engine(
    provider: FakeOpenAI,
) -> None:
    provider.chat_cut_after_words = 3
    text, events, errors = await ask(service([OPENAI, LLAMA], retry_after_partial=True))

    (event,) = events
    assert isinstance(event, HandedOff)
    assert (event.from_engine, event.to_engine, event.reason) == (
        "openai",
        "llama",
        HandoffReason.ERROR,
    )
    assert event.after_partial
    # The stand-in's three words, then the local model's whole answer from the start.
    assert text.startswith("We open at")
    assert len(text.removeprefix("We open at").split()) >= 3
    assert not errors


async def test_a_provider_that_stalls_past_its_deadline_is_handed_over(
    provider: FakeOpenAI,
) -> None:
    provider.chat_stall_secs = 6  # four times the 1.5 s deadline
    text, events, errors = await ask(service([OPENAI, LLAMA]))

    (event,) = events
    assert isinstance(event, HandedOff)
    assert (event.from_engine, event.to_engine) == ("openai", "llama")
    assert event.reason is HandoffReason.DEADLINE
    assert event.detail == "nothing within 1500 ms"
    assert REPLY not in text and len(text.split()) >= 3  # the local model answered
    assert not errors


async def test_every_engine_failing_says_which_and_why(tmp_path: Path) -> None:
    missing = [
        EngineSpec(EngineKind.LLAMA, f"llama-{i}", str(tmp_path / f"gone-{i}.gguf")) for i in (1, 2)
    ]
    llm = service(missing)
    text, events, errors = await ask(llm)

    assert text == ""
    handoff, gave_up = events
    assert isinstance(handoff, HandedOff) and handoff.to_engine == "llama-2"
    assert isinstance(gave_up, GaveUp) and not gave_up.partial
    (error,) = errors
    message = str(error.error)
    assert "every llm engine failed on this request: llama-1 (error: " in message
    assert f"{tmp_path / 'gone-1.gguf'}" in message and "llama-2 (error: " in message
    assert llm.is_usable
