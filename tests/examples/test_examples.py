"""Every script in examples/ runs as a user runs it: a subprocess on a short recording.

Each run has a time limit, and each test checks what the user would notice:
the bot's reply is in call.wav and says the right thing, the tool was called,
the guardrail tripped and the dose was never heard, the OpenAI stand-in was
asked for the reply and only for that.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fake_openai import API_KEY, REPLY, running_fake_openai
from hearing import assert_heard

from voxpipe.engines import shared_stt
from voxpipe.evaluation import word_error_rate

pytestmark = pytest.mark.models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIME_LIMIT_S = 240


async def run_example(
    name: str, out: Path, caller: Path, *args: str, env: dict[str, str] | None = None
) -> str:
    """Run ``examples/<name>.py OUT --input CALLER ARGS``; its stdout, once it exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        str(out),
        "--input",
        str(caller),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), TIME_LIMIT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"examples/{name}.py ran over {TIME_LIMIT_S} s") from None
    # Kept beside the outputs: what the user would have seen, for a failing test.
    (out / "stdout.txt").write_bytes(stdout)
    (out / "stderr.txt").write_bytes(stderr)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    return stdout.decode()


def bot_audio(out: Path) -> tuple[np.ndarray, int]:
    """The bot's side of call.wav (the right channel), as int16 samples."""
    data, rate = sf.read(str(out / "call.wav"), dtype="int16")
    assert data.ndim == 2 and data.shape[1] == 2
    return data[:, 1], rate


def bot_said(out: Path) -> list[str]:
    """What the bot said, from transcript.json."""
    messages: list[dict[str, Any]] = json.loads((out / "transcript.json").read_text())
    return [str(m["content"]) for m in messages if m["role"] == "assistant" and m.get("content")]


async def heard(out: Path) -> str:
    """The bot's side of the call as Whisper hears it."""
    audio, rate = bot_audio(out)
    stt = await shared_stt()
    return await asyncio.to_thread(stt.transcribe, audio.tobytes(), rate)


def audible(out: Path) -> bool:
    audio, _ = bot_audio(out)
    return bool(np.abs(audio).max() > 3000)


async def test_a_chained_call_from_a_recording_is_answered_aloud(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = make_speech("What time do you open on Saturday?", tail_ms=3000)
    printed = await run_example("chained_call", tmp_path, caller)
    [*_, reply] = bot_said(tmp_path)
    assert f"bot:    {reply}" in printed
    assert audible(tmp_path)
    assert word_error_rate(reply, await heard(tmp_path)) <= 0.25


async def test_a_realtime_call_against_the_embedded_server_gets_the_scripted_answer(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = make_speech("Hello, are you open today?", tail_ms=3000)
    printed = await run_example("realtime_call", tmp_path, caller)
    line = "Hello, this is Green Cross pharmacy. We are open from nine to six today."
    assert bot_said(tmp_path) == [line]
    assert "the bot spoke for" in printed
    assert word_error_rate(line, await heard(tmp_path)) <= 0.25


async def test_the_custom_tool_is_called_and_its_result_answers_the_caller(
    make_speech: Any, tmp_path: Path
) -> None:
    # London, not Paris: tiny.en hears "Paris" as "pairs" in about one paced run in ten.
    caller = make_speech("What is the weather like in London today?", tail_ms=3000)
    printed = await run_example("custom_tool", tmp_path, caller)
    calls = json.loads((tmp_path / "tool_calls.json").read_text())
    assert [c["city"].lower() for c in calls] == ["london"], calls
    assert "tool called: get_weather(city='London')" in printed
    assert any("sunny" in line.lower() for line in bot_said(tmp_path)), printed
    assert audible(tmp_path)


async def test_the_custom_guardrail_trips_and_the_dose_is_never_heard(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = make_speech("I have a headache. How much ibuprofen can I take?", tail_ms=3000)
    printed = await run_example("custom_guardrail", tmp_path, caller)
    trips = json.loads((tmp_path / "trips.json").read_text())
    assert [t["rule"] for t in trips] == ["no-dosage-advice"]
    assert trips[0]["span"].lower() == "milligrams"
    assert "guardrail tripped: no-dosage-advice" in printed
    said = bot_said(tmp_path)
    assert "I can't advise on doses. Please ask our pharmacist." in said
    assert not any("milligram" in line.lower() for line in said)
    words = await heard(tmp_path)
    assert "milligram" not in words.lower() and "ibuprofen" not in words.lower(), words
    assert "pharmacist" in words.lower(), words


async def test_the_openai_llm_slot_asks_openai_for_the_reply_and_nothing_else(
    make_speech: Any, tmp_path: Path
) -> None:
    question = "What time do you open on Saturday?"
    caller = make_speech(question, tail_ms=3000)
    async with running_fake_openai() as fake:
        env = {"OPENAI_API_KEY": API_KEY}
        printed = await run_example(
            "openai_llm_slot", tmp_path, caller, "--base-url", fake.url, env=env
        )

    # Only the LLM slot is OpenAI's: the stand-in was asked for one chat reply, no STT or TTS.
    assert fake.unauthorised == 0
    assert len(fake.chats) == 1, fake.chats_told()
    assert not fake.transcripts and not fake.spoken
    asked = [m for m in fake.chats[0]["messages"] if m["role"] == "user"]
    assert "saturday" in str(asked[-1]["content"]).lower(), asked  # the caller's words
    # ...and its reply was spoken by the local voice.
    assert bot_said(tmp_path) == [REPLY]
    assert f"bot:    {REPLY}" in printed
    # Judged by content word: local Whisper once heard the 1.8 s Piper reply as
    # "We'd open it 9 on Saturday." (two of six words off, all of open/nine/saturday
    # there); a reply not spoken, or another one, misses them.
    assert_heard(REPLY, await heard(tmp_path))
