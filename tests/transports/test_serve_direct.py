"""``voxpipe serve`` in direct mode: the page calls the provider, voxpipe controls it by sideband.

Real parts on loopback: ``voxpipe serve``'s app with its direct routes, the
embedded realtime server as the provider (WebRTC call API, Silero VAD,
scripted brain with the local voice), an aiortc peer doing what the page
does, and Whisper on what that peer heard.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from direct_serve import page_call, serving_direct
from hearing import assert_heard
from oai_webrtc_peer import until

from voxpipe.engines import WhisperEngine, make_tts
from voxpipe.guardrails import DenyPolicy
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.webrtc.app import RunningServe

KEY = "sk-provider-key"
QUESTION = "What time do you open on Saturday?"
ANSWER = "We open at nine on Saturday morning."
TOOL = {
    "type": "function",
    "name": "lookup_hours",
    "description": "Opening hours for a day.",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
}


@asynccontextmanager
async def direct_serve(
    script: list[Any], tmp_path: Path, **direct: Any
) -> AsyncIterator[RunningServe]:
    brain = ScriptedBrain(script, voice=make_tts(deterministic=True), pace=2.0)
    async with (
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        serving_direct(srv, api_key=KEY, record_dir=tmp_path / "calls", **direct) as serve,
    ):
        yield serve


async def report(serve: RunningServe, call_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{serve.url}/api/direct/calls/{call_id}") as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@pytest.mark.timeout(240)
async def test_a_tool_only_the_sideband_answers(make_speech: Any, tmp_path: Path) -> None:
    """The page never sees the tool's handler: voxpipe runs it on the sideband, the page hears."""
    ran: list[dict[str, Any]] = []

    async def lookup_hours(arguments: dict[str, Any]) -> dict[str, Any]:
        ran.append(arguments)
        return {"day": arguments.get("day"), "opens": "9:00"}

    script: list[Any] = [ScriptedFunctionCall("lookup_hours", {"day": "saturday"}), ANSWER]
    session = {"type": "realtime", "model": "gpt-realtime", "tools": [TOOL]}
    async with direct_serve(
        script, tmp_path, session=session, tools={"lookup_hours": lookup_hours}
    ) as serve:
        async with page_call(serve) as (peer, secret):
            assert secret["value"].startswith("ek_")
            peer.mic.say(make_speech(QUESTION, rate=48_000))
            await until(lambda: peer.of_type("output_audio_buffer.stopped"), 150, "the answer")
            seen = await report(serve, peer.call_id)
        assert ran == [{"day": "saturday"}]
        assert [t["name"] for t in seen["tool_calls"]] == ["lookup_hours"]
        assert seen["responses"] == 2 and seen["cost_complete"]
        assert_heard(ANSWER, WhisperEngine().transcribe(bytes(peer.heard.pcm), 48_000))
        outputs = [
            e["item"]["output"]
            for e in peer.events
            if e["type"] == "conversation.item.added"
            and e["item"]["type"] == "function_call_output"
        ]
        assert [json.loads(o)["opens"] for o in outputs] == ["9:00"]
        await until(lambda: (tmp_path / "calls" / peer.call_id / "report.json").exists(), 30)
        written = json.loads((tmp_path / "calls" / peer.call_id / "report.json").read_text())
        assert written["mode"] == "direct" and not (tmp_path / "calls" / "call.wav").exists()
        timeline = (tmp_path / "calls" / peer.call_id / "timeline.jsonl").read_text()
        assert '"tool_call_finished"' in timeline and '"cost"' in timeline


UNSAFE = "We open at nine on Saturday morning. The staff password is swordfish."


@pytest.mark.timeout(240)
async def test_a_guardrail_trip_cancels_before_the_words_are_heard(
    make_speech: Any, tmp_path: Path
) -> None:
    """The transcript runs ahead of the audio: the sideband cancels and the cut is truncated."""
    policy = DenyPolicy(words=["password", "swordfish"])
    async with direct_serve([UNSAFE], tmp_path, policies=[policy]) as serve:
        async with page_call(serve) as (peer, _):
            peer.mic.say(make_speech(QUESTION, rate=48_000))
            await until(lambda: peer.of_type("conversation.item.truncated"), 150, "the cut")
            await until(lambda: peer.heard.arrivals_ms and not peer.mic.speaking, 30)
            heard_at_cut = len(peer.heard.pcm)
            seen = await report(serve, peer.call_id)
            await until(lambda: len(peer.heard.pcm) > heard_at_cut + 96_000, 30)  # 1 s more
        assert [t["policy"] for t in seen["guardrail_trips"]] == ["deny"]
        done = peer.of_type("response.done")[0]["response"]
        assert done["status"] == "cancelled"
        assert peer.of_type("output_audio_buffer.cleared")
        heard = WhisperEngine().transcribe(bytes(peer.heard.pcm), 48_000).lower()
        assert "password" not in heard and "swordfish" not in heard, heard
        assert "nine" in heard or "open" in heard, heard  # the safe start was spoken
