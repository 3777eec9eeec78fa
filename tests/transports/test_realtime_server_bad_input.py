"""Every bad input gets a protocol ``error`` event and the session goes on."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from test_realtime_server_support import API_KEY, RawClient, raw_client, silence

from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    brain = ScriptedBrain(["Still here and listening."], pace=0)
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        yield srv


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wav_bytes() -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(2400, dtype=np.int16), 24_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


async def assert_session_goes_on(client: RawClient) -> None:
    await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    done = await client.until("response.done")
    assert done["response"]["status"] == "completed"
    assert (
        done["response"]["output"][0]["content"][0]["text"].strip() == "Still here and listening."
    )


_TD = "audio.input.turn_detection."


def _session(fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session.update", "session": {"type": "realtime", **fields}}


def _vad(fields: dict[str, Any]) -> dict[str, Any]:
    return _session({"audio": {"input": {"turn_detection": {"type": "server_vad", **fields}}}})


def _bad(param: str) -> tuple[str, str, None]:
    return ("invalid_value", "session." + param, None)


DEEP_OBJECT = '{"type": "session.update", "session": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001
DEEP_IN_AN_ITEM = (
    '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
    '"content": [{"type": "input_text", "text": "hi", "x": ' + "[" * 40 + "]" * 40 + "}]}}"
)

# (name, message to send, error code, param, event_id the error must name)
BAD_EVENTS: list[tuple[str, Any, str, str | None, str | None]] = [
    ("malformed json", '{"type": "response.create", ', "invalid_json", None, None),
    # Nested past Python's recursion limit: once a RecursionError and a 130-line traceback.
    ("nested 100,000 deep", DEEP_OBJECT, "invalid_json", None, None),
    ("an array 40 deep in a valid event", DEEP_IN_AN_ITEM, "invalid_json", None, None),
    # Values the schema's types admit but OpenAI's documented ranges do not (once accepted).
    ("speed 1e9", _session({"audio": {"output": {"speed": 1e9}}}), *_bad("audio.output.speed")),
    ("speed 0.1", _session({"audio": {"output": {"speed": 0.1}}}), *_bad("audio.output.speed")),
    (
        "retention ratio 5",
        _session({"truncation": {"type": "retention_ratio", "retention_ratio": 5}}),
        *_bad("truncation.retention_ratio"),
    ),
    ("negative silence", _vad({"silence_duration_ms": -5}), *_bad(_TD + "silence_duration_ms")),
    ("negative padding", _vad({"prefix_padding_ms": -1}), *_bad(_TD + "prefix_padding_ms")),
    ("threshold 7", _vad({"threshold": 7}), *_bad(_TD + "threshold")),
    ("negative idle timeout", _vad({"idle_timeout_ms": -5}), *_bad(_TD + "idle_timeout_ms")),
    (
        "NaN speed",
        '{"type": "session.update", "session": {"type": "realtime", '
        '"audio": {"output": {"speed": NaN}}}}',
        "invalid_json",
        None,
        None,
    ),
    (
        "Infinity silence",
        '{"type": "session.update", "session": {"type": "realtime", "audio": {"input": '
        '{"turn_detection": {"type": "server_vad", "silence_duration_ms": Infinity}}}}}',
        "invalid_json",
        None,
        None,
    ),
    (
        "text and audio on response.create",
        {"type": "response.create", "response": {"output_modalities": ["text", "audio"]}},
        "invalid_value",
        "response.output_modalities",
        None,
    ),
    (
        "response max_output_tokens 1e9",
        {"type": "response.create", "response": {"max_output_tokens": 10**9}},
        "invalid_value",
        "response.max_output_tokens",
        None,
    ),
    ("not an object", "[1, 2, 3]", "invalid_type", None, None),
    ("unknown type", {"type": "response.explode", "event_id": "e1"}, "invalid_value", "type", "e1"),
    (
        "beta event name",
        {"type": "session.create", "event_id": "e2"},
        "invalid_value",
        "type",
        "e2",
    ),
    ("missing type", {"event_id": "e3"}, "missing_required_parameter", "type", "e3"),
    (
        "missing field",
        {
            "type": "conversation.item.truncate",
            "event_id": "e4",
            "item_id": "x",
            "content_index": 0,
        },
        "missing_required_parameter",
        "audio_end_ms",
        "e4",
    ),
    (
        "wrong field type",
        {
            "type": "conversation.item.truncate",
            "event_id": "e5",
            "item_id": "x",
            "content_index": 0,
            "audio_end_ms": "late",
        },
        "invalid_type",
        "audio_end_ms",
        "e5",
    ),
    (
        "append without audio",
        {"type": "input_audio_buffer.append", "event_id": "e6"},
        "missing_required_parameter",
        "audio",
        "e6",
    ),
    (
        "odd-length pcm16",
        {"type": "input_audio_buffer.append", "event_id": "e7", "audio": b64(b"\x01\x02\x03")},
        "invalid_value",
        "audio",
        "e7",
    ),
    (
        "not base64",
        {"type": "input_audio_buffer.append", "event_id": "e8", "audio": "%%%not"},
        "invalid_value",
        "audio",
        "e8",
    ),
    (
        "wav instead of raw pcm",
        {"type": "input_audio_buffer.append", "event_id": "e9", "audio": b64(wav_bytes())},
        "invalid_value",
        "audio",
        "e9",
    ),
    (
        "oversize append",
        {
            "type": "input_audio_buffer.append",
            "event_id": "e10",
            "audio": "A" * (15 * 1024 * 1024 + 4),
        },
        "string_above_max_length",
        "audio",
        "e10",
    ),
    # A lone UTF-16 surrogate cannot be encoded back to UTF-8: echoed, it once
    # killed the session's writer and left the socket open and mute.
    (
        "lone surrogate in type",
        r'{"type": "session.\ud800update", "event_id": "e14"}',
        "invalid_json",
        None,
        "e14",
    ),
    (
        "lone surrogate in instructions",
        r'{"type": "session.update", "event_id": "e15", "session": {"type": "realtime", '
        r'"instructions": "hi \udfff there"}}',
        "invalid_json",
        None,
        "e15",
    ),
    (
        "commit empty buffer",
        {"type": "input_audio_buffer.commit", "event_id": "e11"},
        "input_audio_buffer_commit_empty",
        None,
        "e11",
    ),
    (
        "truncate unknown item",
        {
            "type": "conversation.item.truncate",
            "event_id": "e12",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": 10,
        },
        "item_truncate_invalid_item_id",
        "item_id",
        "e12",
    ),
    (
        "retrieve unknown item",
        {"type": "conversation.item.retrieve", "event_id": "e13", "item_id": "item_nope"},
        "item_retrieve_invalid_item_id",
        "item_id",
        "e13",
    ),
    (
        "delete unknown item",
        {"type": "conversation.item.delete", "event_id": "e14", "item_id": "item_nope"},
        "item_delete_invalid_item_id",
        "item_id",
        "e14",
    ),
    (
        "unsupported input rate",
        {
            "type": "session.update",
            "event_id": "e15",
            "session": {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
        },
        "invalid_value",
        "session.audio.input.format.rate",
        "e15",
    ),
    (
        "unknown audio format",
        {
            "type": "session.update",
            "event_id": "e16",
            "session": {"type": "realtime", "audio": {"output": {"format": {"type": "audio/mp3"}}}},
        },
        "invalid_value",
        "session.audio.output.format.type",
        "e16",
    ),
    (
        "transcription session",
        {"type": "session.update", "event_id": "e17", "session": {"type": "transcription"}},
        "invalid_value",
        "session.type",
        "e17",
    ),
    (
        "output buffer clear over websocket",
        {"type": "output_audio_buffer.clear", "event_id": "e18"},
        "invalid_value",
        "type",
        "e18",
    ),
    (
        "create with previous item unknown",
        {
            "type": "conversation.item.create",
            "event_id": "e19",
            "previous_item_id": "item_nope",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        "invalid_value",
        "previous_item_id",
        "e19",
    ),
    (
        "item of unknown type",
        {"type": "conversation.item.create", "event_id": "e20", "item": {"type": "telepathy"}},
        "invalid_value",
        "item.type",
        "e20",
    ),
]


@pytest.mark.parametrize(
    ("message", "code", "param", "event_id"),
    [case[1:] for case in BAD_EVENTS],
    ids=[case[0] for case in BAD_EVENTS],
)
async def test_bad_event_is_an_error_event_and_the_session_goes_on(
    server: RunningServer, message: Any, code: str, param: str | None, event_id: str | None
) -> None:
    async with raw_client(server) as client:
        await client.send(message)
        error = (await client.until("error"))["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == code
        assert error.get("param") == param
        assert error.get("event_id") == event_id
        assert error["message"]
        await assert_session_goes_on(client)


async def _spoken_item(client: RawClient) -> str:
    await client.send({"type": "response.create"})
    done = await client.until("response.done")
    return str(done["response"]["output"][0]["id"])


@pytest.mark.parametrize(("content_index", "param"), [(1, "content_index"), (0, "audio_end_ms")])
async def test_truncate_outside_the_audio_is_refused(
    server: RunningServer, content_index: int, param: str
) -> None:
    async with raw_client(server) as client:
        item_id = await _spoken_item(client)
        await client.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "t1",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": 60_000,
            }
        )
        error = (await client.until("error"))["error"]
        assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", param, "t1")
        await assert_session_goes_on(client)


async def test_truncating_a_user_item_is_refused(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.push_to_talk()
        await client.append(silence(300))
        await client.send({"type": "input_audio_buffer.commit"})
        committed = await client.until("input_audio_buffer.committed")
        await client.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "t2",
                "item_id": committed["item_id"],
                "content_index": 0,
                "audio_end_ms": 100,
            }
        )
        error = (await client.until("error"))["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "item_id",
            "t2",
        )
        assert "Only assistant messages with audio" in error["message"]
        await assert_session_goes_on(client)


async def test_voice_cannot_change_after_assistant_audio(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"output": {"voice": "marin"}}},
            }
        )
        updated = await client.until("session.updated")
        assert updated["session"]["audio"]["output"]["voice"] == "marin"
        await _spoken_item(client)
        await client.send(
            {
                "type": "session.update",
                "event_id": "v1",
                "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
            }
        )
        error = (await client.until("error"))["error"]
        assert (error["code"], error["event_id"]) == ("cannot_update_voice", "v1")
        await assert_session_goes_on(client)


async def test_binary_frame_is_an_error_not_a_disconnect(server: RunningServer) -> None:
    async with raw_client(server) as client:
        await client.ws.send_bytes(b"\x00\x01")
        error = (await client.until("error"))["error"]
        assert error["code"] == "invalid_json"
        await assert_session_goes_on(client)


async def test_garbage_from_one_client_never_reaches_another(server: RunningServer) -> None:
    async with raw_client(server) as noisy, raw_client(server) as calm:
        garbage = [
            "{",
            "null",
            '{"type": 7}',
            '{"type": "input_audio_buffer.append", "audio": 5}',
            '{"type": "session.update", "session": []}',
            "\x00" * 1000,
        ]
        for message in garbage * 20:
            await noisy.send(message)
        await calm.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        done = await calm.until("response.done")
        assert done["response"]["status"] == "completed"
        assert "error" not in calm.types()
        errors = 0
        while errors < len(garbage) * 20:
            if (await noisy.next())["type"] == "error":
                errors += 1
        await assert_session_goes_on(noisy)
        await asyncio.sleep(0)


async def test_client_vanishing_mid_response_leaves_others_untouched(
    server: RunningServer,
) -> None:
    from websockets.asyncio.client import connect

    async with raw_client(server) as calm:
        rude = await connect(
            f"{server.realtime_url}?model=m",
            additional_headers={"Authorization": f"Bearer {API_KEY}"},
        )
        await rude.send('{"type": "response.create"}')
        while '"response.output_audio.delta"' not in str(await rude.recv()):
            pass
        rude.transport.abort()  # drop the TCP connection without a close frame
        await calm.send({"type": "response.create"})
        done = await calm.until("response.done")
        assert done["response"]["status"] == "completed"
    # Both sessions are cleaned up: the calm one closed, the rude one's dead socket
    # noticed. Waited for (a session never cleaned up times out), not slept on: how
    # soon the server's tasks get to run depends on the machine's load.
    async with asyncio.timeout(10):
        while server.server.live_sessions:  # noqa: ASYNC110 - the server's own record
            await asyncio.sleep(0.02)


async def test_brain_text_that_utf8_cannot_carry_is_replaced_not_fatal() -> None:
    # A lone surrogate in the brain's words cannot be encoded: before, the writer
    # died on it and the socket stayed open and mute for good.
    brain = ScriptedBrain(["Broken \ud800 words.", "Still here and listening."], pace=0)
    async with (
        running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv,
        raw_client(srv) as client,
    ):
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        done = await client.until("response.done")
        assert done["response"]["output"][0]["content"][0]["text"].strip() == "Broken \ufffd words."
        assert not [e for e in client.seen if e["type"] == "error"]
        await assert_session_goes_on(client)


async def test_deep_nesting_costs_no_traceback_in_the_log(server: RunningServer) -> None:
    from loguru import logger

    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    try:
        async with raw_client(server) as client:
            for _ in range(5):
                await client.send(DEEP_OBJECT)
            for _ in range(5):
                assert (await client.until("error"))["error"]["code"] == "invalid_json"
            await assert_session_goes_on(client)
    finally:
        logger.remove(sink)
    assert not [line for line in logged if "Traceback" in line or "RecursionError" in line]
