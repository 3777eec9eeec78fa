"""The embedded server's WebRTC call API, with an aiortc peer for the page and a sideband.

Real parts on loopback: the realtime server (Silero VAD, scripted brain with
the local voice), aiortc on both ends (Opus), aiohttp WebSockets for the
sideband, and Whisper on what the peer heard.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from hearing import assert_heard
from oai_webrtc_peer import OaiPeer, oai_call, post_offer, until

from voxpipe.engines import WhisperEngine, make_tts
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.realtime_server.serving import RunningServer

KEY = "sk-server-key"
ANSWER = "We open at nine on Saturday morning."
QUESTION = "What time do you open on Saturday?"
TOOL = {
    "type": "function",
    "name": "lookup_hours",
    "description": "Opening hours for a day.",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
}


@asynccontextmanager
async def server(script: list[Any]) -> AsyncIterator[RunningServer]:
    brain = ScriptedBrain(script, voice=make_tts(deterministic=True), pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        yield srv


async def mint(srv: RunningServer, session: dict[str, Any] | None = None) -> str:
    body = {"session": {"type": "realtime", "model": "gpt-realtime", **(session or {})}}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{srv.http_base_url}/realtime/client_secrets", json=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        value: str = (await r.json())["value"]
        return value


@asynccontextmanager
async def sideband(
    srv: RunningServer, call_id: str, key: str = KEY
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = f"{srv.ws_base_url}/realtime?call_id={call_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws,
    ):
        yield ws


async def refused(srv: RunningServer, call_id: str, key: str) -> tuple[int, str]:
    """A sideband upgrade that must fail: its status and error code."""
    url = f"{srv.ws_base_url.replace('ws', 'http', 1)}/realtime?call_id={call_id}"
    headers = {
        "Authorization": f"Bearer {key}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json()
        return resp.status, body["error"]["code"]


def heard_text(peer: OaiPeer) -> str:
    return WhisperEngine().transcribe(bytes(peer.heard.pcm), 48_000)


@pytest.mark.timeout(240)
async def test_a_question_answered_over_webrtc(make_speech: Any) -> None:
    """Audio both ways on the tracks, events on oai-events, reply audio never as events."""
    async with server([ANSWER]) as srv:
        secret = await mint(srv)
        async with oai_call(srv.http_base_url, secret) as peer:
            assert peer.location == f"/v1/realtime/calls/{peer.call_id}"
            assert peer.call_id.startswith("rtc_")
            await until(lambda: peer.of_type("session.created"), 30, "session.created")
            peer.mic.say(make_speech(QUESTION, rate=48_000))
            await until(lambda: peer.of_type("output_audio_buffer.stopped"), 120, "the reply")
        types = [e["type"] for e in peer.events]
        assert types[0] == "session.created"
        assert "input_audio_buffer.speech_started" in types
        assert "input_audio_buffer.committed" in types
        assert "response.output_audio.delta" not in types  # audio went on the track
        done = peer.of_type("response.done")[0]["response"]
        assert done["status"] == "completed"
        started = peer.of_type("output_audio_buffer.started")[0]
        stopped = peer.of_type("output_audio_buffer.stopped")[0]
        assert started["response_id"] == stopped["response_id"] == done["id"]
        assert types.index("output_audio_buffer.started") < types.index("response.done")
        assert_heard(ANSWER, heard_text(peer))


@pytest.mark.timeout(240)
async def test_the_sideband_sees_the_events_and_answers_a_tool_call(make_speech: Any) -> None:
    """The page's call and a server's sideband: the tool runs on the server, the page hears."""
    script: list[Any] = [ScriptedFunctionCall("lookup_hours", {"day": "saturday"}), ANSWER]
    async with server(script) as srv:
        secret = await mint(srv, {"tools": [TOOL], "instructions": "Help with opening hours."})
        async with oai_call(srv.http_base_url, secret) as peer:
            await until(lambda: peer.of_type("session.created"), 30, "session.created")
            seen: list[dict[str, Any]] = []
            tool_calls: list[dict[str, Any]] = []
            async with sideband(srv, peer.call_id) as ws:

                async def control() -> None:
                    async for message in ws:
                        event = json.loads(message.data)
                        seen.append(event)
                        if event["type"] == "response.function_call_arguments.done":
                            tool_calls.append(event)
                            output = {"day": "saturday", "opens": "9:00"}
                            item = {
                                "type": "function_call_output",
                                "call_id": event["call_id"],
                                "output": json.dumps(output),
                            }
                            await ws.send_json({"type": "conversation.item.create", "item": item})
                            await ws.send_json({"type": "response.create"})

                controller = asyncio.create_task(control())
                peer.mic.say(make_speech(QUESTION, rate=48_000))
                await until(lambda: len(peer.of_type("output_audio_buffer.stopped")) >= 1, 150)
                controller.cancel()
        # The sideband saw what the page saw from its attach on, in the same order.
        page_ids = [e["event_id"] for e in peer.events]
        side_ids = [e["event_id"] for e in seen]
        assert side_ids, "the sideband saw nothing"
        assert side_ids == page_ids[page_ids.index(side_ids[0]) :][: len(side_ids)]
        assert "session.created" not in [e["type"] for e in seen]  # none for an existing call
        assert len(tool_calls) == 1 and tool_calls[0]["name"] == "lookup_hours"
        outputs = [
            e["item"]
            for e in peer.events
            if e["type"] == "conversation.item.added"
            and e["item"]["type"] == "function_call_output"
        ]
        assert [json.loads(o["output"])["opens"] for o in outputs] == ["9:00"]
        transcripts = [
            e["transcript"] for e in peer.of_type("response.output_audio_transcript.done")
        ]
        assert [t.strip() for t in transcripts] == [ANSWER]
        assert_heard(ANSWER, heard_text(peer))


LONG_ANSWER = (
    "We open at nine on Saturday morning, at ten on Sunday, and on weekdays we open "
    "at eight in the morning and close at six in the evening, except on public holidays."
)


@pytest.mark.timeout(240)
async def test_a_barge_in_is_truncated_by_the_server(make_speech: Any) -> None:
    """On WebRTC the server plays the reply, so on a barge-in it clears and truncates it itself.

    Every reply is long: a question the VAD splits under load only starts another one.
    """
    voice = make_tts(deterministic=True)
    full_ms = len(b"".join(voice.synthesize(LONG_ANSWER))) / 2 / voice.sample_rate * 1000
    async with server([LONG_ANSWER]) as srv:
        secret = await mint(srv)
        async with oai_call(srv.http_base_url, secret) as peer:
            await until(lambda: peer.of_type("session.created"), 30, "session.created")
            peer.mic.say(make_speech(QUESTION, rate=48_000))

            def playing_since() -> float | None:
                """When the reply now playing started arriving (monotonic ms), if one is."""
                started = peer.event_arrivals
                starts = [t for t, e in started if e["type"] == "output_audio_buffer.started"]
                ends = [
                    t
                    for t, e in started
                    if e["type"] in ("output_audio_buffer.cleared", "output_audio_buffer.stopped")
                ]
                return starts[-1] if starts and (not ends or ends[-1] < starts[-1]) else None

            def heard_a_second() -> bool:
                since = playing_since()
                return since is not None and peer.loud_ms_since(since) >= 1000

            await until(heard_a_second, 120, "a second of the reply to be heard")
            stop_ms = time.monotonic() * 1000
            peer.mic.say(make_speech("Stop, please.", rate=48_000))
            await until(
                lambda: peer.arrived_since("conversation.item.truncated", stop_ms), 120, "a cut"
            )
        barge = peer.arrived_since("input_audio_buffer.speech_started", stop_ms)
        cleared = peer.arrived_since("output_audio_buffer.cleared", stop_ms)
        truncated = peer.arrived_since("conversation.item.truncated", stop_ms)[0]
        assert barge and cleared, "the caller's words did not cut the reply"
        cut = [
            e["response"]
            for e in peer.of_type("response.done")
            if e["response"]["id"] == cleared[0]["response_id"]
        ]
        assert cut and truncated["item_id"] == cut[0]["output"][0]["id"]
        assert cut[0]["status"] in ("completed", "cancelled")  # cancelled if still being made
        # Cut at what had gone out: at least what the caller had heard, short of the end.
        assert 900 <= truncated["audio_end_ms"] <= full_ms - 1500, (truncated, full_ms)


@pytest.mark.timeout(120)
async def test_refusals() -> None:
    """The sideband takes only the server's key and a live call's id; calls need a key."""
    async with server([ANSWER]) as srv:
        secret = await mint(srv)
        async with oai_call(srv.http_base_url, secret) as peer:
            # An ephemeral secret cannot attach, not even to the call it started.
            assert await refused(srv, peer.call_id, secret) == (404, "call_id_not_found")
            assert await refused(srv, peer.call_id, "sk-wrong") == (401, "invalid_api_key")
            assert await refused(srv, "rtc_0123456789abcdef", KEY) == (404, "call_id_not_found")
            # The id of a WebSocket session is not a call.
            url = f"{srv.realtime_url}?model=gpt-realtime"
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url, headers={"Authorization": f"Bearer {KEY}"}) as ws,
            ):
                created = json.loads((await ws.receive()).data)
                session_id = created["session"]["id"]
                assert await refused(srv, session_id, KEY) == (404, "call_id_not_found")
            # Hanging up takes the server's key too.
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{srv.http_base_url}/realtime/calls/{peer.call_id}/hangup",
                    headers={"Authorization": f"Bearer {secret}"},
                ) as resp,
            ):
                assert resp.status == 401
            assert peer.call_id in srv.server.calls.calls  # the call goes on
        status, body, _ = await post_offer(srv.http_base_url, "ek_unknown", "v=0\r\n")
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
        status, body, _ = await post_offer(srv.http_base_url, secret, "not sdp")
        assert status == 400, body
        assert not srv.server.live_sessions or all(
            d not in srv.server.calls.calls.values() for d in srv.server.live_sessions
        )


@pytest.mark.timeout(120)
async def test_hang_up_ends_both_legs() -> None:
    """A hang-up closes the sideband, the page's data channel and the media, and frees the call."""
    async with server([ANSWER]) as srv:
        secret = await mint(srv)
        async with oai_call(srv.http_base_url, secret) as peer, sideband(srv, peer.call_id) as ws:
            await until(lambda: peer.of_type("session.created"), 30, "session.created")
            url = f"{srv.http_base_url}/realtime/calls/{peer.call_id}/hangup"
            headers = {"Authorization": f"Bearer {KEY}"}
            async with aiohttp.ClientSession() as http:
                async with http.post(url, headers=headers) as resp:
                    assert resp.status == 200
                message = await asyncio.wait_for(ws.receive(), 30)
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert message.data == 1000, message  # the server closed it, normally
                await asyncio.wait_for(peer.channel_closed.wait(), 60)
                await until(lambda: not srv.server.calls.calls, 30, "the call to be freed")
                async with http.post(url, headers=headers) as resp:
                    assert resp.status == 404
            frames = len(peer.heard.arrivals_ms)
            await asyncio.sleep(1.0)
            assert len(peer.heard.arrivals_ms) == frames  # no more media
            assert await refused(srv, peer.call_id, KEY) == (404, "call_id_not_found")
