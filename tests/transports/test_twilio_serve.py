"""Phone calls on ``voxpipe serve`` from a fake Twilio built to Twilio's documentation.

Real parts on loopback: aiohttp serving the Twilio routes, the embedded
Realtime server (scripted brain), the voxpipe graph; the far end is
``tests/support/fake_twilio.py`` (Twilio's buffer, marks and clear, with a
one-way latency each way), which records what it played.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import soundfile as sf
from fake_twilio import FakeTwilio, mulaw_recording
from loopback import serving as serving_app
from phone_calls import (
    REPLIES,
    TALKED_OVER_MS,
    artifacts,
    barge_in_recordings,
    calling,
    ended_ms,
    heard_truncation,
    phone_transport,
    the_call,
    until,
)
from phone_calls import serving as serve_phones
from realtime_calls import LONG_REPLY, compose

from voxpipe.errors import ConfigError
from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.transports.telephony.routes import TwilioConfig
from voxpipe.transports.telephony.transport import PhoneCallTransport
from voxpipe.transports.webrtc.app import ServeApp, ServeConfig


@asynccontextmanager
async def serving(
    tmp_path: Path, replies: list[str] = REPLIES, twilio: TwilioConfig | None = None, **config: Any
) -> AsyncIterator[tuple[str, ServeApp]]:
    async with serve_phones(tmp_path, replies, twilio=twilio or TwilioConfig(), **config) as up:
        yield up


@asynccontextmanager
async def phoning(
    base: str, recording: Path, barge_in: Path | None = None, **fake: Any
) -> AsyncIterator[FakeTwilio]:
    """A fake Twilio carrying a caller who says ``recording`` (then ``barge_in``, heard)."""
    line = None if barge_in is None else mulaw_recording(barge_in)
    twilio = FakeTwilio(mulaw_recording(recording), barge_in=line, **fake)
    stream_url, parameters = await twilio.answer(base)
    async with calling(twilio, stream_url, parameters):
        yield twilio


async def test_a_phone_caller_is_answered_and_hanging_up_ends_the_call_with_artifacts(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], recording)
    async with serving(tmp_path) as (base, serve), phoning(base, recording) as twilio:
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: twilio.loud_ms() > 1500)  # the answer is being heard
        transport = call.transport
        assert isinstance(transport, PhoneCallTransport)
        twilio.stop()
        hung_up_ms = transport.now_ms()
        await until(lambda: not serve.calls, 10)  # ended, and its artifacts written
        await until(lambda: twilio.closed_ms is not None, 5)  # the server let the socket go
    assert ended_ms(call) - hung_up_ms < 2000
    assert serve.ended == [(call.call_id, CallEnd.HUNG_UP)]
    # Every message named the stream; marks went out and came back as positions.
    assert {m["streamSid"] for m in twilio.received} == {twilio.stream_sid}
    kinds = {m["event"] for m in twilio.received}
    assert {"media", "mark"} <= kinds <= {"media", "mark", "clear"}
    assert transport.skipped == {}
    assert artifacts(tmp_path, call.call_id) == [
        "call.wav",
        "transcript.json",
        "timeline.jsonl",
        "report.json",
        "report.html",
    ]
    audio, rate = sf.read(str(tmp_path / "calls" / call.call_id / "call.wav"))
    assert audio.shape[1] == 2 and rate == 8_000  # at the bot's rate: G.711 passed through
    assert abs(audio[:, 0]).max() > 0.05 and abs(audio[:, 1]).max() > 0.05  # both spoke


@pytest.mark.parametrize("latency_ms", [0, 60, 150])
async def test_a_barge_in_clears_twilio_and_truncates_where_its_playback_stopped(
    make_speech: Any, tmp_path: Path, latency_ms: float
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    async with (
        serving(tmp_path, replies=[LONG_REPLY, "Sure."]) as (base, serve),
        phoning(base, question, barge_in=barge_in, latency_ms=latency_ms) as twilio,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        cut, unheard = await heard_truncation(call, twilio, 90)
        heard = twilio.heard_ms(cut.item_id)
        estimated = phone_transport(call).cuts_estimated
        assert twilio.barge_in_sent_ms is not None  # the caller heard a second, then spoke
        onset_ms = twilio.barge_in_sent_ms
        cleared_ms = next(t for t in twilio.clears_ms if t > onset_ms)
        after_clear = twilio.media_after_clear
    clear_ms = cleared_ms - onset_ms - 2 * latency_ms
    talked_over_ms = heard - twilio.barge_in_heard_ms
    print(
        f"\nlatency {latency_ms} ms: heard {heard:.0f} ms of {cut.item_id} "
        f"({twilio.barge_in_heard_ms:.0f} at the onset), truncated at {cut.audio_end_ms}; "
        f"clear {clear_ms:.0f} ms after onset, {talked_over_ms:.0f} ms of reply played over it"
    )
    # Cut mid-answer, after what the caller heard before barging in.
    assert twilio.barge_in_heard_ms - 40 <= cut.audio_end_ms < cut.received_ms
    assert abs(cut.audio_end_ms - heard) <= 40
    assert [(c.audio_end_ms, heard) for c, heard in unheard] == [(0, 0)] * len(unheard)
    assert estimated == 0  # Twilio's marks placed it
    assert talked_over_ms < TALKED_OVER_MS  # see phone_calls.TALKED_OVER_MS
    assert after_clear == 0  # no bot audio followed the clear until a new reply began


async def test_when_twilio_returns_no_marks_the_cut_is_estimated_and_said_to_be(
    make_speech: Any, tmp_path: Path
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    async with (
        serving(tmp_path, replies=[LONG_REPLY, "Sure."]) as (base, serve),
        phoning(base, question, barge_in, latency_ms=60, returns_marks=False) as twilio,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        cut, unheard = await heard_truncation(call, twilio, 90)
        heard = twilio.heard_ms(cut.item_id)
        transport = phone_transport(call)
    print(f"\nno marks: heard {heard:.0f} ms, truncated at {cut.audio_end_ms} (estimated)")
    assert transport.cuts_estimated >= 1  # and a warning said so
    assert [(c.audio_end_ms, heard) for c, heard in unheard] == [(0, 0)] * len(unheard)
    assert twilio.barge_in_heard_ms - 60 <= cut.audio_end_ms < cut.received_ms
    # The sent position, paced at real time, is what a far end that plays on arrival heard.
    assert abs(cut.audio_end_ms - heard) <= 60


@pytest.mark.parametrize(
    ("end", "ended"),
    [("stop", CallEnd.HUNG_UP), ("drop", CallEnd.HUNG_UP), ("silence", CallEnd.PEER_SILENT)],
)
async def test_a_stop_a_closed_socket_or_a_silent_stream_ends_the_call_within_2_s(
    make_speech: Any, tmp_path: Path, end: str, ended: CallEnd
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [500, "Hello?", 3000], recording)
    async with serving(tmp_path) as (base, serve), phoning(base, recording) as twilio:
        await until(lambda: serve.calls)
        call = the_call(serve)
        await asyncio.sleep(1.0)  # mid-call
        if end == "stop":
            twilio.stop()
        elif end == "drop":
            await twilio.drop()
        else:
            twilio.fall_silent()
        since_ms = call.transport.now_ms()
        await until(lambda: not serve.calls, 10)  # ended, and its artifacts written
    took_ms = ended_ms(call) - since_ms
    # Silence is noticed 2 s after the last message, then within the call's 250 ms watch.
    assert took_ms < (2000 if end != "silence" else 2600), took_ms
    assert serve.ended == [(call.call_id, ended)]
    assert len(artifacts(tmp_path, call.call_id)) == 5


async def test_garbage_mid_call_is_skipped_and_the_call_goes_on(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1500, "What time do you open on Saturday?", 4000], recording)
    garbage = [
        "{not json",
        json.dumps({"event": "party"}),
        json.dumps({"event": "media", "streamSid": "MZ00000000000000000000000000000001"}),
        json.dumps({"event": "media", "media": {"payload": "%%%"}}),
        json.dumps({"event": "mark", "mark": {"name": "never-sent"}}),
        "x" * 100_000,
    ]
    async with serving(tmp_path) as (base, serve), phoning(base, recording) as twilio:
        await until(lambda: serve.calls)
        call = the_call(serve)
        await asyncio.sleep(0.5)
        for text in garbage:
            twilio.send_raw(text)
        twilio.press("5")
        await until(lambda: twilio.loud_ms() > 1000)  # answered all the same
        transport = call.transport
        assert isinstance(transport, PhoneCallTransport)
        assert list(serve.calls) == [call.call_id]
    assert transport.skipped == {
        "not_json": 1,
        "unknown_event": 1,
        "missing_field": 1,
        "bad_payload": 1,
        "too_large": 1,
    }


async def _post_voice(base: str, signature: str | None, **form: str) -> tuple[int, str]:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/twilio/voice", data=form, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_the_voice_webhook_needs_twilios_signature_when_an_auth_token_is_set(
    tmp_path: Path,
) -> None:
    from voxpipe.telephony.webhook import twilio_signature

    form = {"CallSid": "CA1", "From": "+15550001"}
    async with serving(tmp_path, twilio=TwilioConfig(auth_token="s3cr3t")) as (base, serve):
        url = f"{base}/twilio/voice"
        valid = twilio_signature("s3cr3t", url, form.items())
        forged = twilio_signature("other", url, form.items())
        status, body = await _post_voice(base, valid, **form)
        assert status == 200 and "<Connect><Stream" in body
        # The same signed request again (captured and replayed): refused.
        assert (await _post_voice(base, valid, **form)) == (403, "forbidden: replayed\n")
        assert (await _post_voice(base, forged, **form))[0] == 403
        assert (await _post_voice(base, None, **form)) == (403, "forbidden: missing\n")
        # Signed for other parameters: refused too.
        assert (await _post_voice(base, valid, **{**form, "From": "+15550002"}))[0] == 403
        assert not serve.calls


async def test_a_stream_must_present_a_fresh_token_for_its_own_call(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [500, "Hello?", 500], recording)
    async with serving(tmp_path) as (base, serve):
        twilio = FakeTwilio(mulaw_recording(recording))
        url, parameters = await twilio.answer(base)
        refusals = [
            {},
            {"token": "not-a-token"},
            {"token": parameters["token"] + "x"},
        ]
        other_call = FakeTwilio(b"", call_sid="CA00000000000000000000000000000099")
        _, for_another = await other_call.answer(base)
        refusals.append(for_another)
        for given in refusals:
            refused = FakeTwilio(b"")
            await asyncio.wait_for(refused.run(url, given), 5)
            assert refused.close_code == 1008, given
        assert not serve.calls and not serve.ended
        task = asyncio.create_task(twilio.run(url, parameters))
        await until(lambda: serve.calls)
        await twilio.drop()
        await task
        again = FakeTwilio(b"")
        await asyncio.wait_for(again.run(url, parameters), 5)  # the token was used
        assert again.close_code == 1008


async def test_a_full_server_refuses_the_stream_and_rejects_the_call(tmp_path: Path) -> None:
    async with serving(tmp_path, max_calls=0) as (base, _):
        status, body = await _post_voice(base, None, CallSid="CA1")
        assert status == 200 and '<Reject reason="busy"/>' in body
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/twilio", headers={"Upgrade": "websocket"}) as response,
        ):
            assert response.status == 503


def test_twilio_beyond_loopback_needs_an_auth_token() -> None:
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        TwilioConfig.for_serve(loopback=False, environ={})
    signed = TwilioConfig.for_serve(loopback=False, environ={"TWILIO_AUTH_TOKEN": "s3cr3t"})
    assert signed.auth_token == "s3cr3t"
    assert TwilioConfig.for_serve(loopback=True, environ={}).auth_token is None


async def test_without_twilio_configured_serve_has_no_phone_routes(tmp_path: Path) -> None:
    serve = ServeApp(ServeConfig(call=LiveCallSpec(record_dir=tmp_path)))
    async with (
        serving_app(serve.build_app()) as base,
        aiohttp.ClientSession() as http,
        http.post(f"{base}/twilio/voice", data={"CallSid": "CA1"}) as response,
    ):
        assert response.status == 404
