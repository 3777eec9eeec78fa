"""The streamed chained reply on the real engines: pieces, tool calls, abandonment, speculation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest

from voxpipe import engines as eng
from voxpipe.engines.llm import LlamaEngine, LLMChunk
from voxpipe.engines.reply import (
    PieceSpoken,
    ReplyEngine,
    ReplyEvent,
    ReplyPrompt,
    StageTimes,
    TextGenerated,
    ToolCallRequested,
)
from voxpipe.speech_text import split_text

pytestmark = pytest.mark.models

SYSTEM = {"role": "system", "content": "You are a voice assistant."}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city. Only for weather questions.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def ask(
    question: str, *, max_tokens: int = 120, tools: list[dict[str, Any]] | None = None
) -> ReplyPrompt:
    return ReplyPrompt([SYSTEM, {"role": "user", "content": question}], tools or [], max_tokens)


async def collect(events: Any) -> list[ReplyEvent]:
    return [event async for event in events]


def written(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextGenerated))


def spoken(events: list[ReplyEvent]) -> list[PieceSpoken]:
    return [e for e in events if isinstance(e, PieceSpoken)]


async def test_the_first_audio_comes_from_the_first_piece_not_the_whole_reply() -> None:
    replies = ReplyEngine(await eng.shared_engines())
    times = StageTimes()
    prompt = ask("Count from one to twenty in words, separated by commas.", max_tokens=80)
    events = await collect(replies.stream(prompt, times=times))
    pieces = spoken(events)
    assert [p.text for p in pieces] == split_text(written(events))  # the one rule
    assert len(pieces) > 1 and all(len(p.pcm) > 0 for p in pieces)
    timings = times.as_dict()
    assert timings["llm_first_token_ms"] <= timings["llm_first_piece_ms"]
    assert timings["first_audio_ms"] < timings["llm_done_ms"] <= timings["tts_done_ms"]


async def test_tool_calls_pass_through() -> None:
    replies = ReplyEngine(await eng.shared_engines())
    prompt = ask("What's the weather in Paris?", tools=[WEATHER_TOOL])
    events = await collect(replies.stream(prompt))
    [call] = [e.call for e in events if isinstance(e, ToolCallRequested)]
    assert call.name == "get_weather"
    assert json.loads(call.arguments)["city"].lower() == "paris"


async def test_a_text_reply_is_written_not_spoken() -> None:
    replies = ReplyEngine(await eng.shared_engines())
    events = await collect(replies.stream(ask("What is the capital of France?"), speak=False))
    assert "paris" in written(events).lower()
    assert spoken(events) == []


class CountingLLM:
    """The real model, counting the tokens it writes and the generations still running."""

    def __init__(self, llm: LlamaEngine) -> None:
        self.llm = llm
        self.tokens = 0
        self.running = 0

    def stream_chat(self, *args: Any, **kwargs: Any) -> Iterator[LLMChunk]:
        self.running += 1
        try:
            for chunk in self.llm.stream_chat(*args, **kwargs):
                self.tokens += 1
                yield chunk
        finally:
            self.running -= 1


async def test_an_abandoned_reply_stops_the_model_at_its_next_token() -> None:
    engines = await eng.shared_engines()
    llm = CountingLLM(engines.llm)
    replies = ReplyEngine(eng.LocalEngines(engines.stt, cast(LlamaEngine, llm), engines.tts))
    events = replies.stream(ask("Count slowly from one to one hundred.", max_tokens=200))
    async for event in events:
        if isinstance(event, PieceSpoken):
            break
    await events.aclose()
    assert llm.running == 0  # the model is free for the next reply
    tokens = llm.tokens
    assert tokens < 150
    assert [e async for e in replies.stream(ask("Say yes.", max_tokens=5), speak=False)]
    assert llm.tokens > tokens


async def test_a_speculated_reply_is_replayed_for_the_same_prompt() -> None:
    replies = ReplyEngine(await eng.shared_engines())
    prompt = ask("What is the capital of France?")
    speculation = replies.speculate(prompt)
    events = await collect(
        replies.stream(ask(" What is the  capital of France? "), speculation=speculation)
    )
    assert replies.speculations_used == 1
    assert written(events) == "".join(c.text for c in speculation.chunks)
    assert "paris" in written(events).lower() and spoken(events)


async def test_a_speculation_for_another_prompt_is_cancelled() -> None:
    engines = await eng.shared_engines()
    llm = CountingLLM(engines.llm)
    replies = ReplyEngine(eng.LocalEngines(engines.stt, cast(LlamaEngine, llm), engines.tts))
    speculation = replies.speculate(ask("Count slowly from one to one hundred.", max_tokens=200))
    async for _ in speculation.replay(cancel_on_exit=False):
        break  # the guess is under way
    events = await collect(
        replies.stream(ask("What is the capital of Spain?"), speculation=speculation)
    )
    assert replies.speculations_used == 0
    assert speculation.finished and len(speculation.chunks) < 150
    assert llm.running == 0
    assert "madrid" in written(events).lower()
