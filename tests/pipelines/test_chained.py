"""The chained graph end to end on real models: a paced caller, a tool call, the tap slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hearing import assert_heard, bot_speech
from pipecat.frames.frames import Frame, LLMFullResponseEndFrame, LLMTextFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams

from voxpipe.engines import LocalEngines
from voxpipe.evaluation import word_error_rate
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.transports.file import FileTransport

pytestmark = pytest.mark.models


QUESTION = "What is the weather like in London today?"


class TextTap(FrameProcessor):
    """Sits in the guardrail slot: records the LLM text it sees, and any audio (there is none)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.audio_frames = 0
        self.replied = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self.text.append(frame.text)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio_frames += 1
        if isinstance(frame, LLMFullResponseEndFrame) and "".join(self.text).strip():
            self.replied.set()
        await self.push_frame(frame, direction)


async def test_a_paced_call_with_a_tool_call_is_heard_and_answered(
    make_speech, tmp_path: Path, loaded_engines: LocalEngines
) -> None:
    # London, not Paris: tiny.en hears "Paris" as "pairs" in about one paced run in ten.
    question = make_speech(QUESTION, lead_ms=500, tail_ms=4000)
    calls: list[dict[str, object]] = []

    async def get_weather(params: FunctionCallParams, city: str) -> None:
        """Get the current weather for a city.

        Args:
            city: The city name.
        """
        calls.append({"city": city})
        await params.result_callback({"conditions": "sunny", "temperature_c": 21})

    transport = FileTransport(question, paced=True)
    tap = TextTap()
    graph = build_chained_pipeline(
        transport,
        instructions="You are a phone assistant. Use tools for weather. One short sentence.",
        tools=[get_weather],
        tap=tap,
        voice="piper",
    )
    async with CallSession(graph.pipeline):
        # The reply follows the tool call; ending the call then plays out what is queued.
        await asyncio.wait_for(tap.replied.wait(), 90)

    messages = graph.context.get_messages()
    user = [m for m in messages if m.get("role") == "user"]
    heard_question = str(user[0]["content"])
    # The whole question reached the LLM, one word in eight misheard at most (with the
    # models loading during the call, "What is the" was lost: see loaded_engines).
    assert word_error_rate(QUESTION, heard_question) <= 1 / 8, heard_question
    assert calls and str(calls[0]["city"]).lower() == "london", (heard_question, calls)
    reply = "".join(tap.text)
    assert "sunny" in reply.lower()
    assert tap.audio_frames == 0  # the tap sits before TTS: it sees text, never audio
    # The bot's audio, as written to the caller, says what the LLM said: all of it
    # (no missing or stale piece), give or take one misheard word in four.
    bot = bot_speech(transport)
    assert len(bot) / 2 / 24_000 > 1.0
    assert_heard(reply, loaded_engines.stt.transcribe(bot, 24_000), nothing_else=True)
    transport.write_call_wav(tmp_path / "call.wav")
    data, rate = sf.read(str(tmp_path / "call.wav"))
    assert rate == 24_000 and data.shape[1] == 2
    assert np.abs(data[:, 0]).max() > 0.1 and np.abs(data[:, 1]).max() > 0.1
