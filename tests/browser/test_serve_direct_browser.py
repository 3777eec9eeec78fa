"""``voxpipe serve --direct`` in real headless Chromium: the package's page calls the provider
(the embedded realtime server's WebRTC call API) itself with a secret from voxpipe, and voxpipe
answers the tool call on the provider's sideband; all inside a loopback-only namespace.

The page's microphone is a fake-mic recording said once when the call is up (the relayed
browser tests' helpers); the brain is scripted, so the reply is known.

The issue's Chromium cases: two questions answered, the first through a tool only the
sideband can answer; a barge-in cut by the provider at what it sent; a guardrail trip
cancelled from the sideband with the unsafe words never reaching the page's audio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from browser import in_loopback_netns, launch_browser
from direct_serve import serving_direct
from realtime_calls import LONG_REPLY
from test_serve_browser import (
    SENTENCE_END,
    SpokenAhead,
    assert_page_played,
    connected_call,
    loud_ms,
    microphone,
    on_page,
    page_recording,
    say_once,
    until,
)

from voxpipe.engines import WhisperEngine
from voxpipe.guardrails import DenyPolicy
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)

KEY = "sk-provider-key"
QUESTION = "What time do you open on Saturday?"
ANSWER = "We open at nine on Saturday morning."
SECOND_QUESTION = "Do you take credit cards?"
SECOND_ANSWER = "Yes, we take cards and cash."
TOOL = {
    "type": "function",
    "name": "lookup_hours",
    "description": "Opening hours for a day.",
    "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
}
BOT_FINALS = "window.voxpipe.captions.filter((c) => c.role === 'bot' && c.final).length"
# The page's recording has been quiet 1.5 s since the last bot answer caption (played out).
PLAYED_OUT = """((v, n) => {
  const finals = v.captions.filter((c) => c.role === "bot" && c.final);
  const r = v.recording;
  return finals.length >= n && r !== null && r.soundAt !== null
    && r.samples - r.soundUntil > 1.5 * r.rate;
})(window.voxpipe, %d)"""
# Samples recorded soon after the provider's first output_audio_buffer.started was heard.
REPLY_BEGAN = """((v) => {
  const started = v.events.find((e) => e.name === "output_audio_buffer.started");
  const r = v.recording;
  return started && r !== null && r.soundAt !== null && r.soundAt > started.at ? r.samples : 0;
})(window.voxpipe)"""


@pytest.mark.timeout(300)
@in_loopback_netns
async def test_two_questions_one_answered_through_a_tool_only_the_sideband_has(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, seconds = microphone(make_speech, mic, QUESTION, SECOND_QUESTION)
    ran: list[dict[str, Any]] = []

    async def lookup_hours(arguments: dict[str, Any]) -> dict[str, Any]:
        ran.append(arguments)
        return {"day": arguments.get("day"), "opens": "9:00"}

    voice = await SpokenAhead.speaking([ANSWER, SECOND_ANSWER])
    script: list[Any] = [
        ScriptedFunctionCall("lookup_hours", {"day": "saturday"}),
        ANSWER,
        SECOND_ANSWER,
    ]
    brain = ScriptedBrain(script, voice=voice, pace=2.0)
    async with (
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        serving_direct(
            srv,
            api_key=KEY,
            page_origin_allowed=True,
            session={"type": "realtime", "model": "gpt-realtime", "tools": [TOOL]},
            tools={"lookup_hours": lookup_hours},
            record_dir=tmp_path / "calls",
        ) as serve,
        launch_browser(mic) as browser,
    ):
        call_id = await connected_call(browser, serve.url, muted=True)
        assert call_id.startswith("rtc_") and call_id in srv.server.calls.calls
        await say_once(browser, firsts)
        await on_page(browser, PLAYED_OUT % 1, 120, "the tool's answer was not heard")
        await say_once(browser, seconds)  # the caller heard the answer, and asks again
        await on_page(browser, PLAYED_OUT % 2, 120, "the second answer was not heard")
        page = await browser.evaluate("window.voxpipe")
        # The handler lives in voxpipe's process only: nothing the page can reach runs it.
        reach = await browser.evaluate(
            "Promise.all(['api/direct/tools/lookup_hours', 'api/tools/lookup_hours']"
            ".map((u) => fetch(u, {method: 'POST', body: '{}'}).then((r) => r.status)))"
        )
        # The page played both answers' worth of speech (neither was cut short).
        await assert_page_played(browser, voice, [ANSWER, SECOND_ANSWER])
        report = serve.app.direct.calls[call_id].control.report() if serve.app.direct else {}
        await browser.evaluate("window.voxpipe.hangup()")
    assert page["direct"] is True and page["errors"] == []
    assert ran == [{"day": "saturday"}]  # the handler ran on the server, once
    assert all(status in (404, 405) for status in reach), reach
    finals = [c["text"] for c in page["captions"] if c["role"] == "bot" and c["final"]]
    assert finals == [ANSWER, SECOND_ANSWER]
    names = [e["name"] for e in page["events"]]
    assert "response.function_call_arguments.done" in names  # the page saw the call...
    assert names.count("output_audio_buffer.started") == 2  # ...and heard both answers
    assert [t["name"] for t in report["tool_calls"]] == ["lookup_hours"]
    assert report["responses"] == 3 and report["guardrail_trips"] == []


@pytest.mark.timeout(300)
@in_loopback_netns
async def test_a_barge_in_from_the_page_is_cut_by_the_provider_at_what_it_sent(
    make_speech: Any, tmp_path: Path
) -> None:
    """On WebRTC the provider knows what it sent: its VAD hears the caller over the reply, and
    it cancels, stops the track and truncates the item itself; the sideband records the cut,
    and the page hears the next reply."""
    mic = tmp_path / "mic.wav"
    firsts, barge_ins = microphone(make_speech, mic, QUESTION, "Sorry, one more thing.")
    replies = [LONG_REPLY, "Sure."]
    voice = await SpokenAhead.speaking(replies)
    brain = ScriptedBrain(replies, voice=voice, pace=1.2)
    async with (
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        serving_direct(
            srv, api_key=KEY, page_origin_allowed=True, record_dir=tmp_path / "calls"
        ) as serve,
        launch_browser(mic) as browser,
    ):
        # ?dsp=0: the fake microphone holds no echo, and Chromium's echo canceller would
        # duck the caller while the reply plays, which is the moment of a barge-in.
        call_id = await connected_call(browser, serve.url, "&dsp=0", muted=True)
        sideband = serve.app.direct.calls[call_id] if serve.app.direct else None
        assert sideband is not None
        await say_once(browser, firsts)
        # The caller has heard a second of the (13 s) reply, and talks over it while the
        # provider still streams it (at 1.2 times real time).
        began = await on_page(browser, REPLY_BEGAN, 120, "the long reply did not play")
        rate = await browser.evaluate("window.voxpipe.recording.rate")
        await on_page(
            browser,
            f"window.voxpipe.recording.soundUntil > {began + rate}",
            30,
            "the long reply did not play for a second",
        )
        await say_once(browser, barge_ins)
        await on_page(
            browser,
            "window.voxpipe.events.some((e) => e.name === 'conversation.item.truncated')",
            60,
            "the reply was not cut",
        )
        await on_page(browser, PLAYED_OUT % 2, 120, "the next reply was not heard")
        await until(lambda: bool(sideband.control.timeline.of(EventKind.COST)[1:]), 30)
        audio, rate = await page_recording(browser)
        page = await browser.evaluate("window.voxpipe")
        report = sideband.control.report()
        cuts = [e.data for e in sideband.control.timeline.of(EventKind.ITEM_TRUNCATED)]
        cancelled = sideband.control.timeline.of(EventKind.RESPONSE_CANCELLED)
        await browser.evaluate("window.voxpipe.hangup()")
    said = b"".join(b"".join(voice.synthesize(s)) for s in SENTENCE_END.split(LONG_REPLY))
    reply_ms = len(said) / 2 / voice.sample_rate * 1000
    sure_ms = len(b"".join(voice.synthesize("Sure."))) / 2 / voice.sample_rate * 1000
    heard_ms = loud_ms(audio, rate)
    print(
        f"\ndirect barge-in: truncated at {cuts[0]['audio_end_ms'] if cuts else None} ms of a"
        f" {reply_ms:.0f} ms reply; the page played {heard_ms:.0f} ms of speech in all"
        f" ('Sure.' is {sure_ms:.0f} ms); load {os.getloadavg()[0]:.1f}"
    )
    assert page["errors"] == [] and report["guardrail_trips"] == []
    # The provider cut the reply mid-way at what it had sent, once; the sideband saw it.
    assert len(cuts) == 1, cuts
    assert 1000 < cuts[0]["audio_end_ms"] < reply_ms - 1000
    assert len(cancelled) == 1
    names = [e["name"] for e in page["events"]]
    assert names.count("conversation.item.truncated") == 1
    assert "output_audio_buffer.cleared" in names
    # The page played the cut reply up to about the cut (no more than what was sent), not the
    # rest of it, and then all of the next one.
    assert heard_ms < cuts[0]["audio_end_ms"] + sure_ms + 1000, heard_ms
    finals = [c["text"] for c in page["captions"] if c["role"] == "bot" and c["final"]]
    assert finals[-1] == "Sure.", finals


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
    async with (
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        serving_direct(
            srv,
            api_key=KEY,
            page_origin_allowed=True,
            policies=[DenyPolicy(words=["password", "swordfish"])],
            record_dir=tmp_path / "calls",
        ) as serve,
        launch_browser(mic) as browser,
    ):
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
