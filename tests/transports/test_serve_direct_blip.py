"""Direct mode: the sideband reconnects on its own blips without touching the page's media.

Real parts on loopback: ``voxpipe serve``'s direct routes, the embedded realtime server as the
provider (WebRTC call API, Silero VAD, scripted brain with the local voice), and an aiortc peer
doing what the page does. The provider drops voxpipe's sideband (an abnormal close, as a
provider's internal error or a proxy's reset gives); voxpipe opens it again on the same call,
and the call's controls work on: the next question is answered through a tool only the
sideband can answer. The peer's connection, its channel and its call never change.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from direct_serve import page_call, serving_direct
from oai_webrtc_peer import until
from test_serve_direct import ANSWER, KEY, QUESTION, TOOL

from voxpipe.engines import make_tts
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)


@pytest.mark.timeout(240)
async def test_a_sideband_blip_reconnects_and_the_page_keeps_its_call(make_speech: Any) -> None:
    ran: list[dict[str, Any]] = []

    async def lookup_hours(arguments: dict[str, Any]) -> dict[str, Any]:
        ran.append(arguments)
        return {"day": arguments.get("day"), "opens": "9:00"}

    script: list[Any] = [ScriptedFunctionCall("lookup_hours", {"day": "saturday"}), ANSWER]
    brain = ScriptedBrain(script, voice=make_tts(deterministic=True), pace=2.0)
    async with (
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        serving_direct(
            srv,
            api_key=KEY,
            session={"type": "realtime", "model": "gpt-realtime", "tools": [TOOL]},
            tools={"lookup_hours": lookup_hours},
        ) as serve,
        page_call(serve) as (peer, _),
    ):
        assert serve.app.direct is not None
        sideband = serve.app.direct.calls[peer.call_id]
        call = srv.server.calls.calls[peer.call_id]
        await until(lambda: len(call.events.sidebands) == 1, 10, "the sideband")
        [dropped] = list(call.events.sidebands)
        assert isinstance(dropped, web.WebSocketResponse)
        frames_before = len(peer.heard.arrivals_ms)

        await dropped.close(code=1011, message=b"internal error")  # the blip

        await until(lambda: sideband.reconnects == 1, 30, "the sideband's reconnect")
        sidebands = call.events.sidebands
        await until(lambda: len(sidebands) == 1 and dropped not in sidebands, 10, "a new sideband")
        # The page's media went on all along: same connection, channel, call.
        assert peer.pc.connectionState == "connected" and not peer.channel_closed.is_set()
        await until(lambda: len(peer.heard.arrivals_ms) > frames_before + 50, 30, "media frames")
        # The controls work on the reconnected sideband: the tool is answered there.
        peer.mic.say(make_speech(QUESTION, rate=48_000))
        await until(lambda: peer.of_type("output_audio_buffer.stopped"), 150, "the answer")
        assert peer.pc.connectionState == "connected" and not peer.channel_closed.is_set()
        assert list(srv.server.calls.calls) == [peer.call_id]  # no new call was made
        report = sideband.control.report()
        reconnects = sideband.control.timeline.of(EventKind.RECONNECT)
        ended = sideband.ended.is_set()
    assert ran == [{"day": "saturday"}]  # the handler ran once, after the blip
    assert [t["name"] for t in report["tool_calls"]] == ["lookup_hours"]
    assert report["sideband_reconnects"] == 1 and report["responses"] == 2
    assert [e.data["leg"] for e in reconnects] == ["sideband"]
    assert not ended  # the sideband was live until the call ended
    outputs = [
        e["item"]["output"]
        for e in peer.events
        if e["type"] == "conversation.item.added" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1 and "9:00" in outputs[0]
