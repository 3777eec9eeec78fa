"""Server VAD, audio formats and response options over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from test_realtime_server_support import API_KEY, noise, raw_client, read_pcm16, silence

from voxpipe.audio import AudioFormat
from voxpipe.realtime_server import codec
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

LONG_REPLY = " ".join(["This is a long answer that keeps going for quite a while."] * 4)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    brain = ScriptedBrain([LONG_REPLY, "Short reply."], pace=2)
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        yield srv


@pytest.fixture
def question(make_speech: Any) -> bytes:
    return read_pcm16(make_speech("Can you hear me now?", rate=24_000, lead_ms=300, tail_ms=0))


async def test_barge_in_cancels_the_response_as_turn_detected(
    server: RunningServer, question: bytes
) -> None:
    async with raw_client(server) as client:
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.append(question + silence(900))
        started = await client.until("input_audio_buffer.speech_started")
        cancelled = await client.until("response.done")
        await client.until("input_audio_buffer.speech_stopped")
        answered = await client.until("response.done")
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
    assert started["item_id"]
    assert answered["response"]["status"] == "completed"  # the barge-in got its own answer


async def test_interrupt_and_create_response_off_leave_the_reply_alone(
    server: RunningServer, question: bytes
) -> None:
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {
                                "type": "server_vad",
                                "create_response": False,
                                "interrupt_response": False,
                            }
                        }
                    },
                },
            }
        )
        await client.until("session.updated")
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        await client.append(question + silence(900))
        await client.until("input_audio_buffer.committed")
        done = await client.until("response.done", 30)
        await client.send({"type": "input_audio_buffer.clear"})
        await client.until("input_audio_buffer.cleared")
    assert done["response"]["status"] == "completed"
    assert client.types().count("response.created") == 1


@pytest.mark.parametrize("audio", [silence(3000), noise(3000)], ids=["silence", "noise"])
async def test_no_speech_no_turn(server: RunningServer, audio: bytes) -> None:
    async with raw_client(server) as client:
        await client.append(audio)
        await client.send({"type": "conversation.item.retrieve", "item_id": "nope"})
        await client.until("error")
    assert "input_audio_buffer.speech_started" not in client.types()


@pytest.mark.parametrize("fmt", [AudioFormat.G711_ULAW, AudioFormat.G711_ALAW])
async def test_g711_in_and_out(server: RunningServer, question: bytes, fmt: AudioFormat) -> None:
    encoded = codec.from_pcm16_24k(question + silence(900), fmt)
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"format": {"type": fmt.value}},
                        "output": {"format": {"type": fmt.value}},
                    },
                },
            }
        )
        await client.until("session.updated")
        for start in range(0, len(encoded), 800):
            await client.ws.send_json(
                {"type": "input_audio_buffer.append", "audio": _b64(encoded[start : start + 800])}
            )
        started = await client.until("input_audio_buffer.speech_started")
        stopped = await client.until("input_audio_buffer.speech_stopped")
        created = await client.until("response.created")
        delta = await client.until("response.output_audio.delta")
        await client.send({"type": "response.cancel"})
        await client.until("response.done")
    assert 0 <= started["audio_start_ms"] <= 300
    assert stopped["audio_end_ms"] <= len(encoded) // 8
    assert created["response"]["audio"]["output"]["format"]["type"] == fmt.value
    # G.711 is one byte per sample at 8 kHz: a 100 ms delta is 800 bytes.
    assert len(_unb64(delta["delta"])) == 800


async def test_push_to_talk_commit_and_item_operations(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.push_to_talk()
        await client.append(silence(500))
        await client.send({"type": "input_audio_buffer.commit"})
        committed = await client.until("input_audio_buffer.committed")
        await client.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
        retrieved = await client.until("conversation.item.retrieved")
        await client.send(
            {
                "type": "conversation.item.create",
                "previous_item_id": "root",
                "item": {
                    "id": "item_first",
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Be kind."}],
                },
            }
        )
        added = await client.until("conversation.item.added")
        await client.send({"type": "conversation.item.delete", "item_id": committed["item_id"]})
        deleted = await client.until("conversation.item.deleted")
        await client.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
        gone = await client.until("error")
    assert len(_unb64(retrieved["item"]["content"][0]["audio"])) == 500 * 48
    assert added["previous_item_id"] is None and added["item"]["id"] == "item_first"
    assert deleted["item_id"] == committed["item_id"]
    assert gone["error"]["code"] == "item_retrieve_invalid_item_id"


async def test_out_of_band_response_stays_out_of_the_conversation(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "metadata": {"purpose": "summary"},
                    "output_modalities": ["text"],
                    "input": [
                        {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "Summarise."}],
                        }
                    ],
                },
            }
        )
        done = await client.until("response.done")
    assert done["response"]["metadata"] == {"purpose": "summary"}
    assert done["response"]["conversation_id"] is None
    assert "conversation.item.added" not in client.types()


async def test_max_output_tokens_cuts_the_response_incomplete(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.send({"type": "response.create", "response": {"max_output_tokens": 20}})
        done = await client.until("response.done")
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    assert done["response"]["usage"]["output_tokens"] <= 25


async def test_idle_timeout_prompts_a_response(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 500}}
                    },
                },
            }
        )
        await client.until("session.updated")
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await client.until("response.done")
        timeout = await client.until("input_audio_buffer.timeout_triggered", 5)
        nudged = await client.until("response.done", 30)
    assert timeout["item_id"]
    assert nudged["response"]["status"] == "completed"


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def test_g711_round_trip_keeps_the_waveform() -> None:
    wave = (np.sin(np.arange(2400) / 4) * 12000).astype("<i2").tobytes()
    for fmt in (AudioFormat.G711_ULAW, AudioFormat.G711_ALAW):
        back = codec.decode(codec.encode(wave, fmt), fmt)
        error = np.abs(np.frombuffer(back, "<i2").astype(int) - np.frombuffer(wave, "<i2"))
        assert error.max() < 400


async def test_batched_vad_scores_match_pipecats_silero(question: bytes) -> None:
    from importlib import resources

    from pipecat.audio.vad.silero import SileroOnnxModel

    from voxpipe.realtime_server.turn_detection import VadChunker
    from voxpipe.transports.realtime_server.vad import SileroBatcher, VadStream

    frames = tuple(VadChunker().feed(codec.resample(question, 24_000, 16_000)))
    model = SileroOnnxModel(
        str(resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx"))
    )
    reference = [float(model(f.samples, 16_000)[0][0]) for f in frames]
    model.reset_states()
    reference_reversed = [float(model(f.samples, 16_000)[0][0]) for f in frames[::-1]]
    batcher = SileroBatcher()
    # Two sessions interleaved in the same batches keep separate states.
    mine, reversed_order = await asyncio.gather(
        batcher.score(VadStream(), frames), batcher.score(VadStream(), frames[::-1])
    )
    assert mine == pytest.approx(reference, abs=1e-5)
    assert reversed_order == pytest.approx(reference_reversed, abs=1e-5)
    assert max(reference) > 0.9  # the question really is speech
