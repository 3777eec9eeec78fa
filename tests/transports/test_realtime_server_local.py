"""The local brain (Whisper -> Qwen -> Piper/eSpeak) behind the real protocol."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_realtime_server_support import (
    RawClient,
    pipecat_realtime,
    raw_client,
    read_pcm16,
    send_audio,
    silence,
)

from voxpipe.transports.realtime_server import RunningServer, ServerConfig, running_realtime_server

pytestmark = pytest.mark.models


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    brain = await LocalBrain.load()
    async with running_realtime_server(config=ServerConfig(api_key="test-key"), brain=brain) as srv:
        yield srv


def spoken(client: RawClient) -> tuple[bytes, str]:
    audio = b"".join(
        base64.b64decode(e["delta"])
        for e in client.seen
        if e["type"] == "response.output_audio.delta"
    )
    text = "".join(
        e["delta"] for e in client.seen if e["type"] == "response.output_audio_transcript.delta"
    )
    return audio, text


async def test_spoken_question_is_heard_and_answered_aloud(
    server: RunningServer, make_speech: Any
) -> None:
    question = read_pcm16(
        make_speech("What is the capital of France?", rate=24_000, lead_ms=500, tail_ms=0)
    )
    client = await ask(server, question, paced=False)
    heard = next(
        e
        for e in client.seen
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    [done] = [e for e in client.seen if e["type"] == "response.done"]
    audio, text = spoken(client)
    assert "capital" in heard["transcript"].lower() and "france" in heard["transcript"].lower()
    assert done["response"]["status"] == "completed"
    assert "paris" in text.lower()
    assert len(audio) / 48 > 500  # at least half a second of speech
    assert done["response"]["usage"]["output_token_details"]["text_tokens"] > 0


async def test_local_model_calls_a_tool_and_uses_its_result(server: RunningServer) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "tools": [tool],
                    "output_modalities": ["text"],
                    "instructions": "Use the get_weather tool for weather questions.",
                },
            }
        )
        await client.until("session.updated")
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the weather in Berlin?"}],
                },
            }
        )
        await client.send({"type": "response.create"})
        call = await client.until("response.function_call_arguments.done", 120)
        await client.until("response.done", 30)
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": json.dumps({"city": "Berlin", "sky": "snowing", "temperature_c": -3}),
                },
            }
        )
        await client.send({"type": "response.create"})
        done = await client.until("response.done", 120)
    assert call["name"] == "get_weather"
    assert "berlin" in json.loads(call["arguments"]).get("city", "").lower()
    answer = done["response"]["output"][0]["content"][0]["text"].lower()
    assert "snow" in answer or "-3" in answer or "minus" in answer


async def test_official_sdk_holds_a_spoken_conversation(
    server: RunningServer, make_speech: Any
) -> None:
    from openai import AsyncOpenAI

    question = read_pcm16(
        make_speech("How many days are there in a week?", rate=24_000, lead_ms=400, tail_ms=0)
    )
    client = AsyncOpenAI(
        api_key="test-key",
        base_url=server.http_base_url,
        websocket_base_url=server.ws_base_url,
        max_retries=0,
    )
    audio = bytearray()
    transcript = ""
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={"type": "realtime", "instructions": "Answer in one short sentence."}
        )
        for start in range(0, len(question + silence(1000)), 4800):
            chunk = (question + silence(1000))[start : start + 4800]
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        async for event in conn:
            if event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "response.output_audio_transcript.delta":
                transcript += event.delta
            elif event.type == "response.done":
                assert event.response.status == "completed"
                break
    assert "seven" in transcript.lower() or "7" in transcript
    assert len(audio) / 48 > 500


async def test_pipecat_service_holds_a_spoken_conversation(
    server: RunningServer, make_speech: Any
) -> None:
    from pipecat.frames.frames import LLMFullResponseEndFrame, TTSAudioRawFrame

    question = read_pcm16(
        make_speech("What is the capital of Italy?", rate=24_000, lead_ms=400, tail_ms=0)
    ) + silence(1200)
    # The answer is waited for, not slept on: Whisper, Qwen and Piper take longer
    # on a loaded machine (a fixed 8 s once bounded it).
    async with pipecat_realtime(server.realtime_url) as (call, output):
        await send_audio(call, question)
        await output.until(lambda: output.count(LLMFullResponseEndFrame) >= 1, 120)
    assert not output.errors
    assert "rome" in output.said().lower()
    spoken = [f for f in output.down if isinstance(f, TTSAudioRawFrame)]
    assert sum(len(f.audio) for f in spoken) / 48 > 500


async def test_cli_local_brain_answers() -> None:
    import socket
    import sys

    import aiohttp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxpipe",
        "realtime-server",
        "--brain",
        "local",
        "--port",
        str(port),
        "--api-key",
        "k",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert b"(local brain)" in banner
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"ws://127.0.0.1:{port}/v1/realtime?model=local",
                headers={"Authorization": "Bearer k"},
            ) as ws,
        ):
            await ws.send_json(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "What is two plus two?"}],
                    },
                }
            )
            await ws.send_json(
                {"type": "response.create", "response": {"output_modalities": ["text"]}}
            )
            while True:
                event = json.loads((await asyncio.wait_for(ws.receive(), 120)).data)
                if event["type"] == "response.done":
                    break
        answer = event["response"]["output"][0]["content"][0]["text"].lower()
        assert "4" in answer or "four" in answer
    finally:
        proc.terminate()
        await proc.wait()


async def use_server_vad(client: RawClient, silence_ms: int) -> None:
    """Server VAD ending a turn after ``silence_ms`` of silence, with input transcription."""
    turns = {"type": "server_vad", "silence_duration_ms": silence_ms}
    audio_in = {"transcription": {"model": "whisper-1"}, "turn_detection": turns}
    await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Answer in one short sentence.",
                "audio": {"input": audio_in},
            },
        }
    )
    await client.until("session.updated")


async def ask(
    server: RunningServer, audio: bytes, *, silence_ms: int = 500, paced: bool = True
) -> RawClient:
    """One spoken question under server VAD; the client (its ``seen`` events) once answered."""
    async with raw_client(server) as client:
        await use_server_vad(client, silence_ms)
        await client.append(audio + silence(silence_ms + 700), paced=paced)
        await client.until("response.done", 120)
    return client


def answer(client: RawClient) -> tuple[dict[str, Any], str]:
    """The response.done event and the spoken transcript."""
    [done] = [e for e in client.seen if e["type"] == "response.done"]
    return done, spoken(client)[1]


async def test_the_reply_is_generated_during_the_silence_wait_and_replayed(
    make_speech: Any,
) -> None:
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    class NotingBrain(LocalBrain):
        """The local brain, noting when it starts on a speculated reply."""

        def __init__(self, engines: Any) -> None:
            super().__init__(engines)
            self.speculated = asyncio.Event()

        def speculate(self, request: Any) -> Any:
            self.speculated.set()
            return super().speculate(request)

    brain = NotingBrain((await LocalBrain.load()).engines)
    question = read_pcm16(
        make_speech("What is the capital of France?", rate=24_000, lead_ms=500, tail_ms=0)
    )
    async with (
        running_realtime_server(config=ServerConfig(api_key="test-key"), brain=brain) as srv,
        raw_client(srv) as client,
    ):
        await use_server_vad(client, 2000)
        # The pause is heard (160 ms of silence starts the speculation) but the turn
        # cannot end before the rest of its 2 s of silence arrives: the server's VAD
        # counts audio, not time. So the reply is under way before the turn ends at
        # any load; sent at once, Whisper's 2.6-4.4 s at load 10-12 missed the window.
        await client.append(question + silence(500), paced=True)
        await asyncio.wait_for(brain.speculated.wait(), 60)
        await client.append(silence(2000 + 700), paced=True)
        await client.until("response.done", 120)
    done, text = answer(client)
    assert done["response"]["status"] == "completed"
    assert "paris" in text.lower()
    assert brain.speculations_used == 1  # the reply came from the pause's speculation


async def test_a_reply_speculated_on_half_a_question_is_not_what_the_caller_gets(
    make_speech: Any,
) -> None:
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    brain = await LocalBrain.load()
    first = read_pcm16(make_speech("What is the capital", rate=24_000, lead_ms=500, tail_ms=0))
    rest = read_pcm16(make_speech("of Spain?", rate=24_000, lead_ms=0, tail_ms=0))
    # A one-second pause: long enough to speculate on, too short to end the turn (2 s).
    async with running_realtime_server(config=ServerConfig(api_key="test-key"), brain=brain) as srv:
        done, text = answer(await ask(srv, first + silence(1000) + rest, silence_ms=2000))
    assert done["response"]["status"] == "completed"
    assert "madrid" in text.lower(), text
