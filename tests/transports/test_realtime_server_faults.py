"""Fault injection: each mode does what a client would see from a failing server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from test_realtime_server_support import API_KEY, raw_client

from voxpipe.errors import ConfigError
from voxpipe.transports.realtime_server import (
    CloseMidResponse,
    ExhaustRateLimits,
    RefuseNextConnection,
    RunningServer,
    ScriptedBrain,
    SendError,
    ServerConfig,
    Stall,
    running_realtime_server,
)

REPLY = "One two three four five six seven eight nine ten."


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = ServerConfig(api_key=API_KEY, fault_injection=True)
    async with running_realtime_server(config=config, brain=ScriptedBrain([REPLY], pace=4)) as srv:
        yield srv


@pytest.fixture
async def plain_server() -> AsyncIterator[RunningServer]:
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY)) as srv:
        yield srv


async def post_fault(server: RunningServer, body: object, key: str = API_KEY) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.http_base_url}/_voxpipe/faults",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        return response.status


async def test_faults_are_off_unless_the_server_was_started_with_them(
    plain_server: RunningServer,
) -> None:
    with pytest.raises(ConfigError):
        plain_server.arm(RefuseNextConnection())
    assert await post_fault(plain_server, {"kind": "refuse_next_connection"}) == 404
    async with raw_client(plain_server) as client:
        await client.send({"type": "voxpipe.fault", "kind": "stall"})
        assert (await client.until("error"))["error"]["code"] == "invalid_value"
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        assert (await client.until("response.done"))["response"]["status"] == "completed"


async def test_fault_control_needs_the_server_key(server: RunningServer) -> None:
    assert await post_fault(server, {"kind": "refuse_next_connection"}, key="guess") == 401
    assert await post_fault(server, {"kind": "no_such_fault"}) == 400
    assert await post_fault(server, ["not", "an", "object"]) == 400  # was a 500
    assert await post_fault(server, {"kind": "refuse_next_connection"}) == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with raw_client(server):
            pass
    assert refused.value.status == 401


async def test_refuse_next_connection_refuses_exactly_one(server: RunningServer) -> None:
    server.arm(RefuseNextConnection())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with raw_client(server):
            pass
    assert refused.value.status == 401
    async with raw_client(server) as client:  # the next one gets in
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        assert (await client.until("response.done"))["response"]["status"] == "completed"


@pytest.mark.parametrize("code", [1011, 1001])
async def test_close_mid_response(server: RunningServer, code: int) -> None:
    server.arm(CloseMidResponse(code=code))
    async with raw_client(server) as client:
        await client.send({"type": "response.create"})
        with pytest.raises(ConnectionError):
            while True:
                await client.next()
        assert client.close_code == code
        assert "response.output_audio.delta" in client.types()
        assert "response.done" not in client.types()


async def test_close_mid_response_after_some_audio_cuts_the_reply_there(
    server: RunningServer,
) -> None:
    server.arm(CloseMidResponse(code=1011, after_ms=600))
    async with raw_client(server) as client:
        await client.send({"type": "response.create"})
        with pytest.raises(ConnectionError):
            while True:
                await client.next()
        assert client.close_code == 1011
        deltas = [e for e in client.seen if e["type"] == "response.output_audio.delta"]
        sent_ms = sum(len(e["delta"]) * 3 / 4 for e in deltas) / 48  # 24 kHz PCM16
        # Cut once 600 ms had gone out: deltas are 100 ms, the reply is seconds long.
        assert 600 <= sent_ms < 800, sent_ms
        assert "response.done" not in client.types()


async def test_send_error_reaches_live_sessions_and_can_close(server: RunningServer) -> None:
    async with raw_client(server) as first, raw_client(server) as second:
        server.arm(
            SendError(
                error_type="invalid_request_error",
                code="insufficient_quota",
                message="You exceeded your current quota.",
                close_code=1011,
            )
        )
        for client in (first, second):
            error = (await client.until("error"))["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "insufficient_quota")
            with pytest.raises(ConnectionError):
                await client.next()
            assert client.close_code == 1011


async def test_exhausted_rate_limits_fail_the_next_response(server: RunningServer) -> None:
    async with raw_client(server) as client:
        server.arm(ExhaustRateLimits(reset_seconds=30))
        await client.send({"type": "response.create"})
        limits = await client.until("rate_limits.updated")
        done = await client.until("response.done")
    by_name = {limit["name"]: limit for limit in limits["rate_limits"]}
    assert by_name["tokens"]["remaining"] == 0
    assert by_name["requests"]["remaining"] == 0
    assert by_name["tokens"]["reset_seconds"] >= 30
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["code"] == "rate_limit_exceeded"
    assert "response.output_audio.delta" not in client.types()


async def test_stall_holds_every_event_for_the_given_time(server: RunningServer) -> None:
    server.arm(Stall(seconds=1.0))
    async with raw_client(server) as client:
        await client.send({"type": "response.create"})
        await client.until("response.output_audio.delta")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.next()
        gap = loop.time() - started
        done = await client.until("response.done")
    assert gap >= 0.9
    assert done["response"]["status"] == "completed"  # a stall delays, it does not break


class BrokenVoice:
    """A TTS engine that crashes, as a broken model install would."""

    sample_rate = 22_050

    def synthesize(self, text: str) -> Iterator[bytes]:
        raise RuntimeError("voice model file is corrupt")


async def test_a_crashing_brain_fails_the_response_not_the_session() -> None:
    from loguru import logger

    brain = ScriptedBrain(["Never spoken."], voice=BrokenVoice(), pace=0)
    config = ServerConfig(api_key=API_KEY)
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR")
    try:
        async with (
            running_realtime_server(config=config, brain=brain) as srv,
            raw_client(srv) as client,
        ):
            await client.send({"type": "response.create"})
            failed = await client.until("response.done")
            text_only = {"output_modalities": ["text"]}
            await client.send({"type": "response.create", "response": text_only})
            text = await client.until("response.done")
    finally:
        logger.remove(sink)
    assert failed["response"]["status"] == "failed"
    error = failed["response"]["status_details"]["error"]
    # The client learns the server failed; what failed (paths, model words) stays in the log.
    assert error["type"] == "server_error"
    assert error["message"] == "The server had an error while generating the response."
    assert any("voice model file is corrupt" in line for line in logged)
    assert text["response"]["status"] == "completed"  # text needs no voice


class BrokenEars(ScriptedBrain):
    """A brain whose recogniser crashes, naming a path, as a broken install would."""

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        raise RuntimeError("/opt/models/whisper/model.bin is missing")


async def test_a_crashing_recogniser_tells_the_client_nothing_of_its_files() -> None:
    from test_realtime_server_support import silence

    config = ServerConfig(api_key=API_KEY)
    async with (
        running_realtime_server(config=config, brain=BrokenEars(["Hello."], pace=0)) as srv,
        raw_client(srv) as client,
    ):
        transcribed = {"transcription": {"model": "whisper-1"}, "turn_detection": None}
        session = {"type": "realtime", "audio": {"input": transcribed}}
        await client.send({"type": "session.update", "session": session})
        await client.until("session.updated")
        await client.append(silence(500))
        await client.send({"type": "input_audio_buffer.commit"})
        failed = await client.until("conversation.item.input_audio_transcription.failed")
    assert failed["error"]["message"] == "The server had an error while transcribing the audio."
    assert "/opt/models" not in str(failed)


class HangsOnce(ScriptedBrain):
    """A brain whose first response hangs for good, as a wedged model would."""

    def __init__(self) -> None:
        super().__init__(["Back again."], pace=0)
        self.calls = 0

    def respond(self, request: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            return self._hang()
        return super().respond(request)

    async def _hang(self) -> Any:
        await asyncio.Event().wait()
        yield None  # never reached


class DeafForever(ScriptedBrain):
    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        await asyncio.Event().wait()
        return None


async def test_a_hung_brain_fails_its_response_and_the_next_one_is_answered() -> None:
    config = ServerConfig(api_key=API_KEY, brain_deadline_s=0.5)
    async with (
        running_realtime_server(config=config, brain=HangsOnce()) as srv,
        raw_client(srv) as client,
    ):
        text_only = {"output_modalities": ["text"]}
        await client.send({"type": "response.create", "response": text_only})
        failed = await client.until("response.done", 10)
        await client.send({"type": "response.create", "response": text_only})
        answered = await client.until("response.done", 10)
    assert failed["response"]["status"] == "failed"
    error = failed["response"]["status_details"]["error"]
    assert error["message"] == "The server had an error while generating the response."
    assert answered["response"]["status"] == "completed"


async def test_a_hung_recogniser_fails_its_transcription_and_the_session_goes_on() -> None:
    from test_realtime_server_support import silence

    config = ServerConfig(api_key=API_KEY, stt_deadline_s=0.5)
    async with (
        running_realtime_server(config=config, brain=DeafForever(["Hello."], pace=0)) as srv,
        raw_client(srv) as client,
    ):
        transcribed = {"transcription": {"model": "whisper-1"}, "turn_detection": None}
        session = {"type": "realtime", "audio": {"input": transcribed}}
        await client.send({"type": "session.update", "session": session})
        await client.until("session.updated")
        await client.append(silence(500))
        await client.send({"type": "input_audio_buffer.commit"})
        failed = await client.until("conversation.item.input_audio_transcription.failed", 10)
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        answered = await client.until("response.done", 10)
    assert failed["error"]["message"] == "The server had an error while transcribing the audio."
    assert answered["response"]["status"] == "completed"
