"""``voxpipe serve --direct`` in real headless Chromium: the package's page calls the provider
(the embedded realtime server's WebRTC call API) itself with a secret from voxpipe, and voxpipe
answers the tool call on the provider's sideband; all inside a loopback-only namespace.

The page's microphone is a fake-mic recording said once when the call is up (the relayed
browser tests' helpers); the brain is scripted, so the reply is known.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from browser import in_loopback_netns, launch_browser
from test_serve_browser import SpokenAhead, connected_call, microphone, on_page, say_once

from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.webrtc.app import ServeConfig, running_serve
from voxpipe.transports.webrtc.direct import DirectConfig

KEY = "sk-provider-key"
QUESTION = "What time do you open on Saturday?"
ANSWER = "We open at nine on Saturday morning."
TOOL = {
    "type": "function",
    "name": "lookup_hours",
    "description": "Opening hours for a day.",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
}
BOT_FINALS = "window.voxpipe.captions.filter((c) => c.role === 'bot' && c.final).length"


@pytest.mark.timeout(240)
@in_loopback_netns
async def test_the_page_calls_the_provider_and_the_sideband_answers_its_tool(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, _ = microphone(make_speech, mic, QUESTION, None)
    ran: list[dict[str, Any]] = []

    async def lookup_hours(arguments: dict[str, Any]) -> dict[str, Any]:
        ran.append(arguments)
        return {"day": arguments.get("day"), "opens": "9:00"}

    voice = await SpokenAhead.speaking([ANSWER])
    script: list[Any] = [ScriptedFunctionCall("lookup_hours", {"day": "saturday"}), ANSWER]
    brain = ScriptedBrain(script, voice=voice, pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        direct = DirectConfig(
            provider_http=srv.http_base_url,
            provider_ws=srv.ws_base_url,
            api_key=KEY,
            session={"type": "realtime", "model": "gpt-realtime", "tools": [TOOL]},
            tools={"lookup_hours": lookup_hours},
            record_dir=tmp_path / "calls",
        )
        config = ServeConfig(call=LiveCallSpec(), direct=direct)
        async with running_serve(config) as serve, launch_browser(mic) as browser:
            # The provider lets the page's origin call it (CORS), as OpenAI lets any.
            srv.server.config = dataclasses.replace(srv.server.config, allowed_origins=(serve.url,))
            call_id = await connected_call(browser, serve.url, muted=True)
            assert call_id.startswith("rtc_") and call_id in srv.server.calls.calls
            await say_once(browser, firsts)
            await on_page(browser, BOT_FINALS, 120, "no final answer caption")
            await on_page(
                browser, "window.voxpipe.recording && window.voxpipe.recording.soundAt", 30,
                "the answer was not heard",
            )  # fmt: skip
            page = await browser.evaluate("window.voxpipe")
            report = serve.app.direct.calls[call_id].control.report() if serve.app.direct else {}
            await browser.evaluate("window.voxpipe.hangup()")
    assert page["direct"] is True and page["errors"] == []
    assert ran == [{"day": "saturday"}]  # the handler ran on the server, once
    finals = [c["text"] for c in page["captions"] if c["role"] == "bot" and c["final"]]
    assert finals == [ANSWER]
    names = [e["name"] for e in page["events"]]
    assert "response.function_call_arguments.done" in names  # the page saw the call...
    assert "output_audio_buffer.started" in names  # ...and heard the answer on the track
    assert [t["name"] for t in report["tool_calls"]] == ["lookup_hours"]
