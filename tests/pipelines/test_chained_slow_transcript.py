"""A transcript slower than the turn watchdog still makes one turn and one LLM request.

On a loaded 2-core machine (load 13-17) local Whisper took longer than
pipecat's turn watchdog (``user_turn_stop_timeout``, 5 s) to transcribe a
question after the VAD's stop. The watchdog ended the turn with no
transcript; the call's first turn counts as one that interrupted the bot, so
pipecat's empty-turn recovery asked the LLM to have the caller repeat
themselves, and the late transcript then started a second turn that asked the
LLM again. Here Whisper is made late on purpose (its real transcript, held
back 7 s, as the load did), and OpenAI's stand-in counts the chat requests.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fake_openai import API_KEY, REPLY, running_fake_openai
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe import CallSession, FileTransport, build_chained_pipeline
from voxpipe.processors.local.stt import LocalWhisperSTTService
from voxpipe.processors.local.tts import LocalTTSService

QUESTION = "What time do you open on Saturday?"
LATE_S = 7.0  # past the watchdog's 5 s with room for a loaded machine's lag


class LateWhisper(LocalWhisperSTTService):
    """Local Whisper as a loaded machine runs it: each transcript lands ``LATE_S`` late."""

    async def transcribe_segment(self, audio: bytes) -> str:
        text = await super().transcribe_segment(audio)
        await asyncio.sleep(LATE_S)
        return text


async def test_a_transcript_later_than_the_turn_watchdog_asks_the_llm_once(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = make_speech(QUESTION, tail_ms=3000)
    async with running_fake_openai() as fake:
        llm = OpenAILLMService(
            api_key=API_KEY,
            base_url=fake.url,
            settings=OpenAILLMService.Settings(model="gpt-4.1-mini"),
        )
        transport = FileTransport(caller, paced=True)
        graph = build_chained_pipeline(transport, llm=llm, stt=LateWhisper(), tts=LocalTTSService())
        async with CallSession(graph) as call:
            await call.run_until_input_ends(max_secs=180)

    # One question, one request: no "please repeat" request for a turn ended empty.
    assert len(fake.chats) == 1, fake.chats_told()
    messages = fake.chats[0]["messages"]
    assert [m["role"] for m in messages] == ["user"], fake.chats_told()
    assert "saturday" in str(messages[0]["content"]).lower(), fake.chats_told()
    # The reply was spoken once, and the context holds one turn each.
    context = graph.context.get_messages()
    (tmp_path / "transcript.json").write_text(json.dumps(context, indent=2, default=str))
    assert [m["role"] for m in context] == ["user", "assistant"], context
    assert context[1]["content"] == REPLY
    assert transport.written.total_ms > 1000, "the reply was not spoken"
