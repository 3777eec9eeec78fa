"""Speculative replies: the local LLM answers during the end-of-turn wait, on the real model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pipecat.processors.aggregators.llm_context import LLMContext

from voxpipe import engines as eng
from voxpipe.engines.speculation import Speculation, prompt_key
from voxpipe.processors.local.llm import LocalLLMService

pytestmark = pytest.mark.models

INSTRUCTIONS = "You are a voice assistant. Answer in one short sentence."


async def reply_text(chunks: AsyncIterator[Any]) -> str:
    text = ""
    async for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
    return text


async def settled(service: LocalLLMService) -> None:
    """Wait for the prefill chain and its speculation to finish generating."""
    assert service._last_prefill is not None
    await service._last_prefill
    speculation = service._speculation
    if speculation is not None:
        async for _ in speculation.replay():  # consumes nothing: the service replays it again
            pass


def asked(text: str) -> LLMContext:
    context = LLMContext()
    context.add_message({"role": "user", "content": text})
    return context


async def test_a_speculated_reply_is_replayed_when_the_turn_ends_as_heard() -> None:
    llm = await eng.shared_llm()
    service = LocalLLMService(engine=llm, instructions=INSTRUCTIONS)
    service.prefill(LLMContext(), "What is the capital of Spain?")
    await settled(service)
    generations = len(llm.generations)
    # The aggregator's message differs in whitespace only: still the same prompt.
    reply = await reply_text(
        await service.get_chat_completions(asked("What is the capital  of Spain? "))
    )
    assert "madrid" in reply.lower()
    assert len(llm.generations) == generations  # nothing was generated for the turn itself
    assert (service.speculations.started, service.speculations.used) == (1, 1)
    assert service.speculations.dropped == 0


async def test_the_caller_going_on_drops_the_stale_speculation() -> None:
    llm = await eng.shared_llm()
    service = LocalLLMService(engine=llm, instructions=INSTRUCTIONS)
    context = LLMContext()
    service.prefill(context, "What is the capital")
    service.prefill(context, "of Spain?")
    await settled(service)
    reply = await reply_text(
        await service.get_chat_completions(asked("What is the capital of Spain?"))
    )
    assert "madrid" in reply.lower()
    stats = service.speculations
    assert (stats.started, stats.used, stats.dropped) == (2, 1, 1)


async def test_a_different_prompt_cancels_the_speculation_and_answers_afresh() -> None:
    llm = await eng.shared_llm()
    service = LocalLLMService(engine=llm, instructions=INSTRUCTIONS)
    service.prefill(LLMContext(), "Count slowly from one to one hundred.")
    await service._last_prefill  # type: ignore[misc]
    generations = len(llm.generations)
    # The turn ended on other words (the STT revised them): the speculation is wrong.
    reply = await reply_text(
        await service.get_chat_completions(asked("What is the capital of France?"))
    )
    assert "paris" in reply.lower()
    assert len(llm.generations) > generations
    assert (service.speculations.used, service.speculations.dropped) == (0, 1)


async def test_an_interrupted_replay_stops_the_generation_and_frees_the_model() -> None:
    llm = await eng.shared_llm()
    service = LocalLLMService(engine=llm, instructions=INSTRUCTIONS, max_tokens=200)
    question = "Count slowly from one to one hundred, one number per line."
    service.prefill(LLMContext(), question)
    await service._last_prefill  # type: ignore[misc]
    chunks = await service.get_chat_completions(asked(question))
    await anext(chunks)
    await chunks.aclose()  # what pipecat does when the caller barges in
    other = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "Hi."}]
    # The model is free again: a prefill (which never waits for it) gets to evaluate.
    assert await asyncio.to_thread(llm.prefill, other) > 0


async def test_a_failed_speculation_raises_where_it_is_replayed() -> None:
    async def broken() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise RuntimeError("model crashed")

    speculation = Speculation.start("k", broken())
    seen = []
    with pytest.raises(RuntimeError, match="model crashed"):
        async for chunk in speculation.replay():
            seen.append(chunk)
    assert seen == [{"n": 1}]


def test_prompt_keys_ignore_whitespace_but_not_words() -> None:
    a = [{"role": "user", "content": "What time  do you open?"}]
    b = [{"role": "user", "content": " What time do you open? "}]
    c = [{"role": "user", "content": "What time do you close?"}]
    assert prompt_key(a, None) == prompt_key(b, None)
    assert prompt_key(a, None) != prompt_key(c, None)
    assert prompt_key(a, None) != prompt_key(a, [{"type": "function"}])


async def test_text_synthesised_ahead_is_spoken_from_that_audio_and_other_text_as_usual() -> None:
    from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.tests.utils import run_test

    from voxpipe.processors.local.tts import LocalTTSService

    tts = LocalTTSService(voice="piper")
    await tts.presynthesize("The capital of Spain is Madrid,")
    await tts.presynthesize("Something nobody asks for.")
    down, _ = await run_test(
        tts,
        frames_to_send=[
            TTSSpeakFrame("The capital  of Spain is Madrid, "),  # spacing aside, the same text
            TTSSpeakFrame("Bye."),
        ],
    )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert tts.ahead_used == 1  # the first piece came from the audio made ahead
    heard = (await eng.shared_stt()).transcribe(audio, 24_000).lower()
    assert "madrid" in heard and "bye" in heard, heard
    assert "nobody" not in heard  # synthesised ahead but never asked for: never spoken
