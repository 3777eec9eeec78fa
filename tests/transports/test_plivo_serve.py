"""Phone calls on ``voxpipe serve`` from a fake Plivo built to Plivo's documentation.

Real parts on loopback: aiohttp serving the Plivo routes, the embedded
Realtime server (scripted brain), the voxpipe graph; the far end is
``tests/support/fake_plivo.py`` (Plivo's buffer, checkpoints that are
returned only when played and dropped by a clear, ``clearedAudio``, with a
one-way latency each way), which records what it played.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_phone import phone_recording
from fake_plivo import FakePlivo, post_answer
from phone_calls import (
    TALKED_OVER_MS,
    artifacts,
    barge_in_recordings,
    calling,
    ended_ms,
    heard_truncation,
    phone_transport,
    serving,
    the_call,
    until,
)
from realtime_calls import LONG_REPLY, compose

from voxpipe.errors import ConfigError
from voxpipe.pipelines.live_call import CallEnd
from voxpipe.transports.telephony.plivo_routes import PlivoConfig
from voxpipe.transports.webrtc.app import ServeApp

AUTH = "MAXXXXXXXXXXXXXXXXXX-token"


@asynccontextmanager
async def plivo_serving(
    tmp_path: Path, config: PlivoConfig | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, ServeApp]]:
    async with serving(tmp_path, plivo=config or PlivoConfig(), **kwargs) as up:
        yield up


@asynccontextmanager
async def phoning(
    base: str, recording: Path, barge_in: Path | None = None, **fake: Any
) -> AsyncIterator[FakePlivo]:
    """A fake Plivo carrying a caller who says ``recording`` (then ``barge_in``, heard)."""
    line = None if barge_in is None else phone_recording(barge_in)
    plivo = FakePlivo(phone_recording(recording), barge_in=line, **fake)
    stream_url, headers = await plivo.answer(base)
    async with calling(plivo, stream_url, headers):
        yield plivo


async def test_a_plivo_caller_is_answered_and_hanging_up_ends_the_call_with_artifacts(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], recording)
    config = PlivoConfig(auth_token=AUTH)
    async with (
        plivo_serving(tmp_path, config) as (base, serve),
        phoning(base, recording, auth_token=AUTH) as plivo,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: plivo.loud_ms() > 1500)  # the answer is being heard
        transport = phone_transport(call)
        played = sum(1 for m in plivo.received if m["event"] == "playedStream")
        await plivo.hang_up()  # Plivo closes the socket: no stop
        hung_up_ms = transport.now_ms()
        await until(lambda: not serve.calls, 10)
    assert ended_ms(call) - hung_up_ms < 2000
    assert serve.ended == [(call.call_id, CallEnd.HUNG_UP)]
    # Plivo's words, each naming the stream: playAudio in mu-law, checkpoints.
    assert {m["streamId"] for m in plivo.received} == {plivo.stream_id}
    assert {m["event"] for m in plivo.received} <= {"playAudio", "checkpoint", "clearAudio"}
    media = next(m["media"] for m in plivo.received if m["event"] == "playAudio")
    assert (media["contentType"], media["sampleRate"]) == ("audio/x-mulaw", 8000)
    assert played == 0  # the fake returns nothing itself: the count is of what we sent
    assert transport.skipped == {}
    assert len(artifacts(tmp_path, call.call_id)) == 5


@pytest.mark.parametrize("latency_ms", [0, 60, 150])
async def test_a_barge_in_clears_plivo_and_truncates_where_its_playback_stopped(
    make_speech: Any, tmp_path: Path, latency_ms: float
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    async with (
        plivo_serving(tmp_path, replies=[LONG_REPLY, "Sure."]) as (base, serve),
        phoning(base, question, barge_in=barge_in, latency_ms=latency_ms) as plivo,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        cut, unheard = await heard_truncation(call, plivo, 90)
        heard = plivo.heard_ms(cut.item_id)
        estimated = phone_transport(call).cuts_estimated
        assert plivo.barge_in_sent_ms is not None  # the caller heard a second, then spoke
        onset_ms = plivo.barge_in_sent_ms
        cleared_ms = next(t for t in plivo.clears_ms if t > onset_ms)
        after_clear = plivo.media_after_clear
    error = cut.audio_end_ms - heard
    talked_over_ms = heard - plivo.barge_in_heard_ms
    print(
        f"\nplivo, latency {latency_ms} ms: heard {heard:.0f} ms, truncated at "
        f"{cut.audio_end_ms} ({error:+.0f} ms); clear "
        f"{cleared_ms - onset_ms - 2 * latency_ms:.0f} ms after onset, "
        f"{talked_over_ms:.0f} ms of reply played over it ({plivo.barge_in_heard_ms:.0f} before)"
    )
    assert plivo.barge_in_heard_ms - 40 <= cut.audio_end_ms < cut.received_ms  # cut mid-answer
    assert abs(error) <= 40
    assert [(c.audio_end_ms, heard) for c, heard in unheard] == [(0, 0)] * len(unheard)
    assert estimated == 0  # placed by the checkpoints and clearedAudio
    assert talked_over_ms < TALKED_OVER_MS  # see phone_calls.TALKED_OVER_MS
    assert after_clear == 0  # no bot audio followed the clear until a new reply began


async def test_when_plivo_confirms_nothing_the_cut_is_estimated_and_said_to_be(
    make_speech: Any, tmp_path: Path
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    async with (
        plivo_serving(tmp_path, replies=[LONG_REPLY, "Sure."]) as (base, serve),
        phoning(base, question, barge_in, latency_ms=60, returns_marks=False) as plivo,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        cut, unheard = await heard_truncation(call, plivo, 90)
        heard = plivo.heard_ms(cut.item_id)
        transport = phone_transport(call)
    print(f"\nplivo, nothing confirmed: heard {heard:.0f} ms, truncated at {cut.audio_end_ms}")
    assert transport.cuts_estimated >= 1  # and a warning said so
    assert [(c.audio_end_ms, heard) for c, heard in unheard] == [(0, 0)] * len(unheard)
    assert plivo.barge_in_heard_ms - 60 <= cut.audio_end_ms < cut.received_ms
    assert abs(cut.audio_end_ms - heard) <= 60


async def test_garbage_mid_call_is_skipped_and_the_call_goes_on(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1500, "What time do you open on Saturday?", 4000], recording)
    garbage = [
        "{not json",
        json.dumps({"event": "connected"}),  # Plivo sends none
        json.dumps({"event": "playedStream", "name": "never-sent"}),
        json.dumps({"event": "clearedAudio"}),  # no clear was sent
        json.dumps({"event": "media", "media": {"payload": "%%%"}}),
    ]
    async with plivo_serving(tmp_path) as (base, serve), phoning(base, recording) as plivo:
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: plivo.media_started_ms > 0)
        for text in garbage:
            plivo.send_raw(text)
        plivo.press("7")
        await until(lambda: plivo.loud_ms() > 1000)  # answered all the same
        transport = phone_transport(call)
        assert list(serve.calls) == [call.call_id]
    assert transport.skipped == {"not_json": 1, "unknown_event": 1, "bad_payload": 1}


async def test_the_answer_webhook_needs_plivos_signature_once(tmp_path: Path) -> None:
    form = {"CallUUID": "12345678-1234-1234-1234-123456789abc", "From": "+15550001"}
    async with plivo_serving(tmp_path, PlivoConfig(auth_token=AUTH)) as (base, serve):
        answered = await post_answer(base, form, AUTH, nonce="n0nce1")
        assert answered.status == 200 and answered.headers is not None
        assert answered.headers["token"].isalnum()
        assert (await post_answer(base, form, "another token")).status == 403  # invalid
        assert (await post_answer(base, form)).status == 403  # missing
        signed = await post_answer(base, form, AUTH, nonce="n0nce2")
        assert signed.status == 200
        assert (await post_answer(base, form, AUTH, nonce="n0nce2")).status == 403  # replayed
        assert not serve.calls


async def test_a_plivo_stream_must_present_the_token_for_its_own_call(tmp_path: Path) -> None:
    async with plivo_serving(tmp_path) as (base, serve):
        mine = FakePlivo(b"")
        url, headers = await mine.answer(base)
        other = FakePlivo(b"", call_uuid="99999999-1234-1234-1234-123456789abc")
        for given in ({}, {"token": "zz"}, headers):  # none, not hex, another call's token
            refused = FakePlivo(b"", call_uuid=other.call_uuid)
            await refused.run(url, given)
            assert refused.close_code == 1008, given
        assert not serve.calls


def test_plivo_beyond_loopback_needs_an_auth_token() -> None:
    with pytest.raises(ConfigError, match="PLIVO_AUTH_TOKEN"):
        PlivoConfig.for_serve(loopback=False, environ={})
    assert PlivoConfig.for_serve(loopback=False, environ={"PLIVO_AUTH_TOKEN": "t"}).signed
