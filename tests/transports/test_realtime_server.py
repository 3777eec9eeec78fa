"""voxpipe realtime-server driven by the official ``openai`` SDK over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI
from test_realtime_server_support import API_KEY, chunks, read_pcm16, silence

from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)

REPLY = "Hello there. The weather in Paris is sunny and warm today, with a light breeze."
SCRIPT = [
    REPLY,
    {"function_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    "It is twenty degrees in Paris.",
]


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(clock: Clock) -> AsyncIterator[RunningServer]:
    config = ServerConfig(api_key=API_KEY, clock=clock)
    async with running_realtime_server(config=config, brain=ScriptedBrain(SCRIPT, pace=4.0)) as srv:
        yield srv


def sdk(server: RunningServer, key: str = API_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=key,
        base_url=server.http_base_url,
        websocket_base_url=server.ws_base_url,
        max_retries=0,
    )


async def until(
    conn: Any, event_type: str, seen: list[Any] | None = None, wait_s: float = 15.0
) -> Any:
    async def read() -> Any:
        while True:
            event = await conn.recv()
            if seen is not None:
                seen.append(event)
            if event.type == event_type:
                return event

    return await asyncio.wait_for(read(), wait_s)


async def test_spoken_question_gets_a_spoken_answer(
    server: RunningServer, make_speech: Any
) -> None:
    speech = read_pcm16(
        make_speech("What is the weather like in Paris today?", rate=24_000, lead_ms=600, tail_ms=0)
    )
    async with sdk(server).realtime.connect(model="gpt-realtime") as conn:
        await until(conn, "session.created")
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            }
        )
        await until(conn, "session.updated")
        for piece in chunks(speech + silence(1200)):
            await conn.input_audio_buffer.append(audio=base64.b64encode(piece).decode())
        seen: list[Any] = []
        started = await until(conn, "input_audio_buffer.speech_started", seen)
        stopped = await until(conn, "input_audio_buffer.speech_stopped", seen)
        committed = await until(conn, "input_audio_buffer.committed", seen)
        done = await until(conn, "response.done", seen)

    # VAD found the speech where it is, with the 300 ms prefix padding before it.
    assert 150 <= started.audio_start_ms <= 450
    speech_end_ms = len(speech) // 48
    assert speech_end_ms + 300 <= stopped.audio_end_ms <= speech_end_ms + 900
    assert committed.item_id == started.item_id == stopped.item_id
    audio = b"".join(
        base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"
    )
    transcript = "".join(
        e.delta for e in seen if e.type == "response.output_audio_transcript.delta"
    )
    assert len(audio) // 48 > 2000  # seconds of spoken answer
    assert transcript.strip() == REPLY
    assert done.response.status == "completed"
    usage = done.response.usage
    assert usage.input_token_details.audio_tokens == -(
        -(stopped.audio_end_ms - started.audio_start_ms) // 100
    )
    assert usage.output_token_details.audio_tokens == -(-(len(audio) // 48) // 50)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    kinds = [e.type for e in seen]
    assert kinds.index("response.created") < kinds.index("rate_limits.updated")
    assert kinds.index("rate_limits.updated") < kinds.index("response.output_audio.delta")
    assert "conversation.item.input_audio_transcription.failed" in kinds  # scripted: no STT


async def test_truncate_keeps_only_the_heard_audio_and_words(server: RunningServer) -> None:
    async with sdk(server).realtime.connect(model="gpt-realtime") as conn:
        await until(conn, "session.created")
        await conn.response.create()
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
        item_id = done.response.output[0].id
        sent_ms = (
            sum(
                len(base64.b64decode(e.delta))
                for e in seen
                if e.type == "response.output_audio.delta"
            )
            // 48
        )

        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=sent_ms + 500, event_id="too_far"
        )
        error = await until(conn, "error")
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=900)
        truncated = await until(conn, "conversation.item.truncated")
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await until(conn, "conversation.item.retrieved")

    assert error.error.type == "invalid_request_error"
    assert error.error.message == (
        f"Audio content of {sent_ms}ms is already shorter than {sent_ms + 500}ms"
    )
    assert error.error.event_id == "too_far"
    assert truncated.audio_end_ms == 900
    part = retrieved.item.content[0]
    assert len(base64.b64decode(part.audio)) == 900 * 48
    assert REPLY.startswith(part.transcript.strip())
    assert 0 < len(part.transcript.strip()) < len(REPLY) // 2


async def test_cancel_ends_the_response_and_a_second_create_is_refused() -> None:
    config = ServerConfig(api_key=API_KEY)
    async with (
        running_realtime_server(config=config, brain=ScriptedBrain([REPLY])) as srv,
        sdk(srv).realtime.connect(model="gpt-realtime") as conn,
    ):
        await until(conn, "session.created")
        await conn.response.cancel(event_id="nothing_to_cancel")
        not_active = await until(conn, "error")
        await conn.response.create()
        await until(conn, "response.output_audio.delta")
        await conn.response.create(event_id="second")
        busy = await until(conn, "error")
        await conn.response.cancel()
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
        # At once: after response.done no response is active, so no wait can matter.
        await conn.response.create(response={"output_modalities": ["text"]})
        text_done = await until(conn, "response.done")

    assert not_active.error.code == "response_cancel_not_active"
    assert not_active.error.event_id == "nothing_to_cancel"
    assert busy.error.code == "conversation_already_has_active_response"
    assert busy.error.event_id == "second"
    assert done.response.status == "cancelled"
    assert done.response.status_details.reason == "client_cancelled"
    assert done.response.output[0].status == "incomplete"
    assert text_done.response.status == "completed"
    assert text_done.response.output[0].content[0].type == "output_text"


async def test_function_call_round_trip(server: RunningServer) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    async with sdk(server).realtime.connect(model="gpt-realtime") as conn:
        await until(conn, "session.created")
        await conn.session.update(session={"type": "realtime", "tools": [tool]})
        await until(conn, "session.updated")
        await conn.response.create()
        await until(conn, "response.done")  # script entry 0: speech
        await conn.response.create()
        call = await until(conn, "response.function_call_arguments.done")
        first = await until(conn, "response.done")
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": json.dumps({"temperature_c": 20}),
            }
        )
        added = await until(conn, "conversation.item.added")
        await conn.response.create()
        seen: list[Any] = []
        second = await until(conn, "response.done", seen)

    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert first.response.output[0].type == "function_call"
    assert added.item.call_id == call.call_id
    assert second.response.status == "completed"
    transcript = "".join(
        e.delta for e in seen if e.type == "response.output_audio_transcript.delta"
    )
    assert transcript.strip() == "It is twenty degrees in Paris."
    # The function output was read as input: the second response's input grew.
    assert second.response.usage.input_tokens > first.response.usage.input_tokens


async def test_ephemeral_secret_starts_a_session_until_it_expires(
    server: RunningServer, clock: Clock
) -> None:
    minted = await sdk(server).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60},
        session={
            "type": "realtime",
            "instructions": "Be brief.",
            "audio": {"output": {"format": {"type": "audio/pcmu"}}},
        },
    )
    assert minted.value.startswith("ek_")
    assert minted.expires_at == int(clock.now) + 60

    async with sdk(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
        created = await until(conn, "session.created")
        clock.now += 61  # the secret expires while the session is live
        await conn.response.create()
        seen: list[Any] = []
        done = await until(conn, "response.done", seen)
    assert created.session.instructions == "Be brief."
    assert done.response.status == "completed"  # a live session outlives its secret
    audio = b"".join(
        base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"
    )
    assert len(audio) // 8 > 1000  # G.711: 8 bytes per ms

    with pytest.raises(Exception, match="401"):
        async with sdk(server, minted.value).realtime.connect(model="gpt-realtime") as conn:
            await conn.recv()
    with pytest.raises(Exception, match="401"):
        async with sdk(server, "ek_unknown").realtime.connect(model="gpt-realtime") as conn:
            await conn.recv()


@pytest.mark.parametrize("seconds", [5, 7201])
async def test_secret_lifetime_outside_10_to_7200_is_refused(
    server: RunningServer, seconds: int
) -> None:
    with pytest.raises(Exception, match=r"expires_after\.seconds"):
        await sdk(server).realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": seconds}, session={"type": "realtime"}
        )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"expires_after": 5}, "expires_after"),  # was a 500
        ({"expires_after": {"anchor": "expires_at"}}, "expires_after.anchor"),
        (["a", "list"], "body"),
    ],
)
async def test_a_malformed_mint_request_is_a_400_naming_the_field(
    server: RunningServer, body: Any, param: str
) -> None:
    url = server.realtime_url.replace("ws://", "http://") + "/client_secrets"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers={"Authorization": f"Bearer {API_KEY}"}) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["param"] == param


async def test_a_minted_session_id_tells_nothing_of_the_secret(server: RunningServer) -> None:
    minted = await sdk(server).realtime.client_secrets.create(session={"type": "realtime"})
    session_id = str(getattr(minted.session, "id", ""))
    assert session_id.startswith("sess_")
    assert minted.value[-6:] not in session_id and minted.value[-12:] not in session_id


async def test_wrong_api_key_is_refused_before_the_upgrade(server: RunningServer) -> None:
    with pytest.raises(Exception, match="401"):
        async with sdk(server, "wrong").realtime.connect(model="gpt-realtime") as conn:
            await conn.recv()


async def test_session_cap_sends_session_expired_and_closes() -> None:
    config = ServerConfig(api_key=API_KEY, session_max_seconds=0.5)
    async with (
        running_realtime_server(config=config) as srv,
        sdk(srv).realtime.connect(model="gpt-realtime") as conn,
    ):
        await until(conn, "session.created")
        expired = await until(conn, "error", wait_s=5)
        with pytest.raises(Exception):  # noqa: B017 - the socket is gone
            await asyncio.wait_for(conn.recv(), 3)
    assert expired.error.code == "session_expired"
    assert expired.error.type == "invalid_request_error"


async def test_scripted_function_call_entry_parsing() -> None:
    brain = ScriptedBrain(SCRIPT)
    assert brain.script[1] == ScriptedFunctionCall("get_weather", {"city": "Paris"})


async def test_secret_for_a_session_no_connection_could_start_is_refused(
    server: RunningServer,
) -> None:
    with pytest.raises(Exception, match=r"session\.audio\.output\.format\.type"):
        await sdk(server).realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 60},
            session={"type": "realtime", "audio": {"output": {"format": {"type": "audio/mp3"}}}},
        )


async def test_browser_style_subprotocol_key_is_accepted(server: RunningServer) -> None:
    import aiohttp

    protocols = ("realtime", f"openai-insecure-api-key.{API_KEY}")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.realtime_url}?model=gpt-realtime", protocols=protocols) as ws,
    ):
        created = json.loads((await ws.receive()).data)
        assert ws.protocol == "realtime"
    assert created["type"] == "session.created"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"{server.realtime_url}?model=gpt-realtime",
                protocols=("realtime", "openai-insecure-api-key.wrong"),
            )
    assert refused.value.status == 401


async def test_beta_protocol_clients_are_told_before_the_upgrade(server: RunningServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"{server.realtime_url}?model=gpt-4o-realtime-preview",
                headers={"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "realtime=v1"},
            )
    assert refused.value.status == 400
