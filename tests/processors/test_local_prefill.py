"""Prompt prefill: the reply's prompt is evaluated during the end-of-turn wait."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pipecat.processors.aggregators.llm_context import LLMContext

from voxpipe import engines as eng
from voxpipe.processors.local.llm import LocalLLMService

pytestmark = pytest.mark.models

SYSTEM = {"role": "system", "content": "You are a voice assistant. Answer in one short sentence."}


async def test_prefilled_prompt_answers_at_once_and_the_same() -> None:
    llm = await eng.shared_llm()
    chat = [SYSTEM, {"role": "user", "content": "What is the capital of Italy?"}]
    cold = "".join(c.text for c in llm.stream_chat(chat, max_tokens=30, temperature=0.0))
    other = [SYSTEM, {"role": "user", "content": "How many legs does a spider have?"}]
    "".join(c.text for c in llm.stream_chat(other, max_tokens=5))  # evict the question
    assert llm.prefill(chat) > 0
    warm = "".join(c.text for c in llm.stream_chat(chat, max_tokens=30, temperature=0.0))
    stats = llm.generations[-1]
    assert stats.cached_tokens == stats.prompt_tokens  # nothing left to evaluate
    assert warm == cold and "rome" in warm.lower()


async def test_prefill_gives_way_to_a_running_generation() -> None:
    llm = await eng.shared_llm()
    chat = [SYSTEM, {"role": "user", "content": "Count from one to fifty."}]
    stop = threading.Event()
    stream = llm.stream_chat(chat, max_tokens=60, stop=stop)
    next(stream)  # the generation now holds the model
    other = [SYSTEM, {"role": "user", "content": "Say hello."}]
    assert await asyncio.to_thread(llm.prefill, other) == 0
    stop.set()
    list(stream)


async def test_service_prefills_what_the_caller_said_so_far() -> None:
    llm = await eng.shared_llm()
    service = LocalLLMService(engine=llm, instructions=SYSTEM["content"], speculate=False)
    context = LLMContext()
    first = service.prefill(context, "What is the capital")
    await asyncio.gather(first, service.prefill(context, "of Spain?"))
    chat = [SYSTEM, {"role": "user", "content": "What is the capital of Spain?"}]
    reply = "".join(c.text for c in llm.stream_chat(chat, max_tokens=20))
    stats = llm.generations[-1]
    assert stats.cached_tokens == stats.prompt_tokens
    assert "madrid" in reply.lower()
