"""``voxpipe serve`` with a WebRTC caller that is not a browser (an aiortc peer): works anywhere.

Real parts on loopback: the aiohttp app, aiortc on both ends, the embedded
Realtime server (scripted brain), the voxpipe graph, and Whisper on what the
caller heard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from realtime_calls import compose
from webrtc_peer import calling, offer

from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.webrtc.app import RunningServe, ServeConfig, running_serve

REPLIES = ["We open at nine on Saturday morning.", "Yes, we take cards and cash."]


@asynccontextmanager
async def serving(tmp_path: Path, **config: Any) -> AsyncIterator[RunningServe]:
    brain = ScriptedBrain(REPLIES, pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")
        async with running_serve(ServeConfig(call=spec, **config)) as serve:
            yield serve


def _json(messages: list[Any]) -> list[Any]:
    return [json.loads(m) for m in messages if isinstance(m, str) and m.startswith("{")]


def _final_captions(messages: list[Any], role: str) -> list[str]:
    return [
        m["text"]
        for m in _json(messages)
        if m.get("type") == "caption" and m["role"] == role and m["final"]
    ]


def _final_caption(messages: list[Any], role: str) -> str | None:
    captions = [
        m["text"]
        for m in _json(messages)
        if m.get("type") == "caption" and m["role"] == role and m["final"]
    ]
    return captions[0] if captions else None


async def until(predicate: Any, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the server's state
            await asyncio.sleep(0.05)


async def test_a_webrtc_caller_is_answered_and_the_call_is_recorded(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 5000], recording)
    async with serving(tmp_path) as serve:
        async with calling(serve.url, recording) as caller:
            assert caller.connected_ms is not None and caller.connected_ms < 5000
            await until(lambda: caller.heard.loud_ms() > 1000)  # the answer is being heard
            call_id = caller.answer["call_id"]
            assert list(serve.app.calls) == [call_id]
            await until(lambda: _final_caption(caller.messages, "bot") is not None)
            # The page is told what was said, and when the bot speaks.
            assert _final_caption(caller.messages, "bot") == REPLIES[0]
            started = [m for m in _json(caller.messages) if m.get("name") == "bot_started_speaking"]
            assert started and started[0]["type"] == "event" and started[0]["item_id"]
        # The caller hung up: the call ends and its artifacts are written.
        await until(lambda: not serve.app.calls, 10)
    assert serve.app.ended == [(call_id, CallEnd.HUNG_UP)]
    out = tmp_path / "calls" / call_id
    for name in ("call.wav", "transcript.json", "timeline.jsonl", "report.json", "report.html"):
        assert (out / name).exists(), name
    audio, rate = sf.read(str(out / "call.wav"))
    assert audio.shape[1] == 2 and rate == 24_000
    assert np.abs(audio[:, 0]).max() > 0.05 and np.abs(audio[:, 1]).max() > 0.05  # both spoke
    kinds = [json.loads(line)["type"] for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert "response_created" in kinds and kinds[-1] == "call_ended"


async def test_a_network_switch_is_a_blip_in_the_same_call_not_a_new_call(
    make_speech: Any, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], first)
    compose(make_speech, [800, "Do you take cards?", 6000], second)
    async with serving(tmp_path) as serve:
        async with calling(serve.url, first) as caller:
            await until(lambda: caller.heard.loud_ms() > 1000)  # the first answer is heard
            call_id, resume = caller.answer["call_id"], caller.answer["resume"]
            caller.vanish()  # Wi-Fi to 4G: the old connection just stops
            async with calling(serve.url, second, resume=resume) as rejoined:
                assert rejoined.answer["call_id"] == call_id  # the same call goes on
                # The new connection hears the rest of the first answer, then the second.
                await until(lambda: REPLIES[1] in _final_captions(rejoined.messages, "bot"))
                assert list(serve.app.calls) == [call_id]
                live = serve.app.calls[call_id].call
        await until(lambda: not serve.app.calls, 10)
    assert serve.app.ended == [(call_id, CallEnd.HUNG_UP)]
    assert len(live.timeline.of(EventKind.CALL_STARTED)) == 1
    assert len(live.timeline.of(EventKind.TRANSPORT_REJOINED)) == 1
    # The second question was answered with the first turn still in the conversation.
    said = json.dumps(live.graph.context.get_messages())
    assert REPLIES[0] in said and REPLIES[1] in said


async def test_a_forged_or_stale_resume_token_is_refused(tmp_path: Path) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = {"sdp": pc.localDescription.sdp, "type": "offer"}
    await pc.close()
    async with serving(tmp_path) as serve:
        status, answer = await offer(serve.url, {**sdp, "resume": "forged"})
        assert (status, answer["error"]["code"]) == (401, "resume_malformed")
        token = serve.app.resume_tokens.mint("no-such-call", _now())
        status, answer = await offer(serve.url, {**sdp, "resume": token})
        assert (status, answer["error"]["code"]) == (410, "call_ended")
        assert not serve.app.calls


async def test_a_caller_that_vanishes_ends_its_call_within_seconds(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "Hello?", 1000], recording)
    async with serving(tmp_path) as serve, calling(serve.url, recording) as caller:
        await until(lambda: bool(serve.app.calls))
        # The tab dies: no goodbye, no more media, no more pings (stock aiortc notices after ~27 s).
        caller.vanish()
        gone = asyncio.get_running_loop().time()
        await until(lambda: not serve.app.calls, 12)
        waited = asyncio.get_running_loop().time() - gone
    assert serve.app.ended[-1][1] is CallEnd.PEER_SILENT
    assert waited < 8  # 5 s of silence, then the call ends


async def test_a_peer_that_never_connects_holds_no_call(tmp_path: Path) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("voxpipe")
    await pc.setLocalDescription(await pc.createOffer())
    async with serving(tmp_path, connect_timeout_ms=2000) as serve:
        status, answer = await offer(serve.url, {"sdp": pc.localDescription.sdp, "type": "offer"})
        await pc.close()  # the page went away before it took the answer
        assert status == 200 and serve.app.calls
        await until(lambda: not serve.app.calls, 8)
    assert serve.app.ended == [(answer["call_id"], CallEnd.NEVER_CONNECTED)]


async def test_refused_offers_get_a_clear_error_and_leave_no_call(tmp_path: Path) -> None:
    async with serving(tmp_path, max_calls=1, max_offer_bytes=4096) as serve:
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"type": "offer"}, 400, "not_an_offer"),
            ({"sdp": 42, "type": "offer"}, 400, "not_an_offer"),
            ({"sdp": "v=0\r\n", "type": "answer"}, 400, "not_an_offer"),
            ({"sdp": "v=0\r\nnonsense", "type": "offer"}, 400, "bad_offer"),
            ({"sdp": "x" * 8000, "type": "offer"}, 413, "offer_too_large"),
        ]
        for body, status, code in cases:
            got, answer = await offer(serve.url, body)
            assert got == status, (body, answer)
            assert answer["error"]["code"].startswith(code) and answer["error"]["message"]
        assert not serve.app.calls


async def test_beyond_loopback_an_offer_needs_a_fresh_single_use_call_token(
    make_speech: Any, tmp_path: Path
) -> None:
    from voxpipe.webrtc.call_tokens import CallTokens

    tokens = CallTokens(b"s" * 32, ttl_s=60)
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "Hello?", 1000], recording)
    async with serving(tmp_path, call_tokens=tokens) as serve:
        probe = {"sdp": "v=0\r\n", "type": "offer"}
        refusals = [
            (probe, "token_required"),
            ({**probe, "token": "not-a-token"}, "token_malformed"),
            ({**probe, "token": CallTokens(b"x" * 32).mint(_now())}, "token_forged"),
            ({**probe, "token": tokens.mint(_now() - 120)}, "token_expired"),
        ]
        for body, code in refusals:
            status, answer = await offer(serve.url, body)
            assert (status, answer["error"]["code"]) == (401, code), answer
        token = tokens.mint(_now())
        async with calling(serve.url, recording, token=token) as caller:
            assert caller.connected_ms is not None
        status, answer = await offer(serve.url, {**probe, "token": token})
        assert (status, answer["error"]["code"]) == (401, "token_reused")


async def test_beyond_max_calls_an_offer_is_told_to_come_back(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "Hello?", 3000], recording)
    async with serving(tmp_path, max_calls=1) as serve, calling(serve.url, recording):
        status, answer = await offer(serve.url, {"sdp": "v=0\r\n", "type": "offer"})
        assert (status, answer["error"]["code"]) == (503, "busy")
        assert len(serve.app.calls) == 1


def _now() -> float:
    import time

    return time.time()


async def test_shutting_the_server_down_ends_live_calls_within_seconds(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "Hello?", 5000], recording)
    async with calling_and_stopping(tmp_path, recording) as (serve, stopped_in):
        pass
    assert stopped_in() < 5.0
    assert [end for _, end in serve.app.ended] == [CallEnd.SERVER_ENDED]
    assert (tmp_path / "calls" / serve.app.ended[0][0] / "call.wav").exists()


@asynccontextmanager
async def calling_and_stopping(tmp_path: Path, recording: Path) -> AsyncIterator[Any]:
    """A live call, then the server shut down under it; yields (serve, seconds it took)."""
    loop = asyncio.get_running_loop()
    timing: dict[str, float] = {}
    async with serving(tmp_path) as serve, calling(serve.url, recording):
        await until(lambda: bool(serve.app.calls))
        timing["stop"] = loop.time()
        await serve.app.stop()
        timing["stopped"] = loop.time()
    yield serve, lambda: timing["stopped"] - timing["stop"]
