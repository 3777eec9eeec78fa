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
from test_serve_browser import (
    SpokenAhead,
    connected_call,
    loud_ms,
    microphone,
    on_page,
    page_recording,
    say_once,
)

from voxpipe.engines import WhisperEngine
from voxpipe.guardrails import DenyPolicy
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


UNSAFE = "We open at nine on Saturday morning. The staff password is swordfish."
CLEARED = "window.voxpipe.events.some((e) => e.name === 'output_audio_buffer.cleared')"


@pytest.mark.timeout(240)
@in_loopback_netns
async def test_a_guardrail_trip_on_the_sideband_keeps_the_words_off_the_pages_audio(
    make_speech: Any, tmp_path: Path
) -> None:
    """The sideband scans the transcript, which runs ahead of the audio, and cancels the reply;
    the page heard its safe start and never the unsafe words (its captions do show the
    transcript: the provider sends it to both legs)."""
    mic = tmp_path / "mic.wav"
    firsts, _ = microphone(make_speech, mic, QUESTION, None)
    voice = await SpokenAhead.speaking([UNSAFE])
    brain = ScriptedBrain([UNSAFE], voice=voice, pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        direct = DirectConfig(
            provider_http=srv.http_base_url,
            provider_ws=srv.ws_base_url,
            api_key=KEY,
            policies=[DenyPolicy(words=["password", "swordfish"])],
            record_dir=tmp_path / "calls",
        )
        config = ServeConfig(call=LiveCallSpec(), direct=direct)
        async with running_serve(config) as serve, launch_browser(mic) as browser:
            srv.server.config = dataclasses.replace(srv.server.config, allowed_origins=(serve.url,))
            call_id = await connected_call(browser, serve.url, muted=True)
            await say_once(browser, firsts)
            await on_page(browser, CLEARED, 120, "the reply was not cut")
            # Played out: the page's recording quiet for 2 s after the cut.
            await on_page(
                browser,
                "(r => r && r.soundAt !== null && r.samples - r.soundUntil > 2 * r.rate)"
                "(window.voxpipe.recording)",
                60,
                "the cut reply did not stop playing",
            )
            audio, rate = await page_recording(browser)
            page = await browser.evaluate("window.voxpipe")
            report = serve.app.direct.calls[call_id].control.report() if serve.app.direct else {}
            await browser.evaluate("window.voxpipe.hangup()")
    assert page["errors"] == []
    assert [t["policy"] for t in report["guardrail_trips"]] == ["deny"]
    names = [e["name"] for e in page["events"]]
    assert "conversation.item.truncated" in names
    heard = WhisperEngine().transcribe((audio * 32767).astype("<i2").tobytes(), rate).lower()
    assert "password" not in heard and "swordfish" not in heard, heard
    # The safe start was played (and no more than the first sentence's worth of audio).
    first_sentence = b"".join(voice.synthesize("We open at nine on Saturday morning."))
    assert 300 <= loud_ms(audio, rate) <= len(first_sentence) / 2 / voice.sample_rate * 1000 + 500
