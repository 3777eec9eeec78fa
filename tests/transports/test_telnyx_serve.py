"""Phone calls on ``voxpipe serve`` from a fake Telnyx built to Telnyx's documentation.

Real parts on loopback: aiohttp serving the Telnyx routes, the embedded
Realtime server (scripted brain), the voxpipe graph; the far end is
``tests/support/fake_telnyx.py`` (Telnyx's buffer, marks returned as played
and all at once on a clear, either G.711 law, a one-way latency each way),
which records what it played.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fake_phone import phone_recording
from fake_telnyx import FakeTelnyx, post_texml
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
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig
from voxpipe.transports.webrtc.app import ServeApp

KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


@asynccontextmanager
async def telnyx_serving(
    tmp_path: Path, config: TelnyxConfig | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, ServeApp]]:
    async with serving(tmp_path, telnyx=config or TelnyxConfig(), **kwargs) as up:
        yield up


@asynccontextmanager
async def phoning(
    base: str,
    recording: Path,
    law: AudioEncoding = AudioEncoding.MULAW,
    barge_in: Path | None = None,
    **fake: Any,
) -> AsyncIterator[FakeTelnyx]:
    """A fake Telnyx carrying a caller who says ``recording`` (in ``law``; ``barge_in`` too)."""
    line = None if barge_in is None else phone_recording(barge_in, law)
    telnyx = FakeTelnyx(phone_recording(recording, law), law=law, barge_in=line, **fake)
    stream_url, parameters = await telnyx.answer(base)
    assert telnyx.law is law  # the TeXML asked for the law the server is configured with
    async with calling(telnyx, stream_url, parameters):
        yield telnyx


async def test_an_a_law_caller_is_answered_in_a_law_and_a_stop_ends_the_call(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], recording)
    config = TelnyxConfig(public_key=PUBLIC_KEY.decode(), law=AudioEncoding.ALAW)
    async with (
        telnyx_serving(tmp_path, config) as (base, serve),
        phoning(base, recording, AudioEncoding.ALAW, key=KEY) as telnyx,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: telnyx.loud_ms() > 1500)  # heard, decoded as A-law
        transport = phone_transport(call)
        telnyx.stop()
        hung_up_ms = transport.now_ms()
        await until(lambda: not serve.calls, 10)
        await until(lambda: telnyx.closed_ms is not None, 5)
    assert ended_ms(call) - hung_up_ms < 2000
    assert serve.ended == [(call.call_id, CallEnd.HUNG_UP)]
    assert transport.stream.encoding is AudioEncoding.ALAW
    # Telnyx's words: media, mark, clear; the bot's audio in A-law, whose quietest codes
    # (speech is mostly quiet samples) are not mu-law's.
    assert {m["event"] for m in telnyx.received} <= {"media", "mark", "clear"}
    payload = np.frombuffer(b"".join(s.payload for s in telnyx.segments), dtype=np.uint8)
    alaw_quiet = np.isin(payload, [0xD5, 0x55, 0xD4, 0x54]).mean()
    mulaw_quiet = np.isin(payload, [0xFF, 0x7F, 0xFE, 0x7E]).mean()
    assert alaw_quiet > 0.05 and alaw_quiet > 10 * mulaw_quiet, (alaw_quiet, mulaw_quiet)
    assert transport.skipped == {}
    assert len(artifacts(tmp_path, call.call_id)) == 5


@pytest.mark.parametrize(
    ("law", "latency_ms"), [(AudioEncoding.MULAW, 0), (AudioEncoding.ALAW, 150)]
)
async def test_a_barge_in_clears_telnyx_and_truncates_where_its_playback_stopped(
    make_speech: Any, tmp_path: Path, law: AudioEncoding, latency_ms: float
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    config = TelnyxConfig(law=law)
    async with (
        telnyx_serving(tmp_path, config, replies=[LONG_REPLY, "Sure."]) as (base, serve),
        phoning(base, question, law, barge_in=barge_in, latency_ms=latency_ms) as telnyx,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        cut, unheard = await heard_truncation(call, telnyx, 90)
        heard = telnyx.heard_ms(cut.item_id)
        estimated = phone_transport(call).cuts_estimated
        assert telnyx.barge_in_sent_ms is not None  # the caller heard a second, then spoke
        onset_ms = telnyx.barge_in_sent_ms
        cleared_ms = next(t for t in telnyx.clears_ms if t > onset_ms)
        after_clear = telnyx.media_after_clear
    error = cut.audio_end_ms - heard
    talked_over_ms = heard - telnyx.barge_in_heard_ms
    print(
        f"\ntelnyx ({law.value}), latency {latency_ms} ms: heard {heard:.0f} ms, truncated at "
        f"{cut.audio_end_ms} ({error:+.0f} ms); clear "
        f"{cleared_ms - onset_ms - 2 * latency_ms:.0f} ms after onset, "
        f"{talked_over_ms:.0f} ms of reply played over it ({telnyx.barge_in_heard_ms:.0f} before)"
    )
    assert telnyx.barge_in_heard_ms - 40 <= cut.audio_end_ms < cut.received_ms
    assert abs(error) <= 40
    assert [(c.audio_end_ms, heard) for c, heard in unheard] == [(0, 0)] * len(unheard)
    assert estimated == 0  # Telnyx's marks placed it
    assert talked_over_ms < TALKED_OVER_MS  # see phone_calls.TALKED_OVER_MS
    assert after_clear == 0


async def test_garbage_and_telnyx_errors_mid_call_are_skipped_and_the_call_goes_on(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1500, "What time do you open on Saturday?", 4000], recording)
    garbage = [
        "{not json",
        json.dumps({"event": "party"}),
        json.dumps({"event": "media", "stream_id": "another-stream", "media": {"payload": ""}}),
        json.dumps({"event": "mark", "mark": {"name": "never-sent"}}),
        "x" * 100_000,
    ]
    async with telnyx_serving(tmp_path) as (base, serve), phoning(base, recording) as telnyx:
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: telnyx.media_started_ms > 0)
        for text in garbage:
            telnyx.send_raw(text)
        telnyx.report_error(100003, "Malformed frame")
        telnyx.press("#")
        await until(lambda: telnyx.loud_ms() > 1000)  # answered all the same
        transport = phone_transport(call)
        assert list(serve.calls) == [call.call_id]
    assert transport.skipped == {
        "not_json": 1,
        "unknown_event": 1,
        "wrong_stream": 1,
        "too_large": 1,
    }


async def test_the_texml_webhook_needs_a_fresh_telnyx_signature_once(tmp_path: Path) -> None:
    form = {"CallSid": "v3:abc", "From": "+15550001"}
    config = TelnyxConfig(public_key=PUBLIC_KEY.decode())
    async with telnyx_serving(tmp_path, config) as (base, serve):
        now = time.time()
        assert (await post_texml(base, form, KEY, timestamp=now)).status == 200
        assert (await post_texml(base, form, KEY, timestamp=now)).status == 403  # replayed
        assert (await post_texml(base, form, KEY, timestamp=now - 301)).status == 403  # stale
        other = Ed25519PrivateKey.generate()
        assert (await post_texml(base, form, other, timestamp=now + 1)).status == 403  # invalid
        assert (await post_texml(base, form)).status == 403  # missing
        assert (await post_texml(base, form, KEY, timestamp=now + 2)).status == 200
        assert not serve.calls


async def test_a_telnyx_stream_must_present_the_token_for_its_own_call(tmp_path: Path) -> None:
    async with telnyx_serving(tmp_path) as (base, serve):
        mine = FakeTelnyx(b"")
        url, parameters = await mine.answer(base)
        for given in ({}, {"token": "forged"}, parameters):
            refused = FakeTelnyx(b"", call_control_id="v3:someone-else")
            await refused.run(url, given)
            assert refused.close_code == 1008, given
        assert not serve.calls


def test_telnyx_beyond_loopback_needs_a_public_key_and_a_known_codec() -> None:
    with pytest.raises(ConfigError, match="TELNYX_PUBLIC_KEY"):
        TelnyxConfig.for_serve(loopback=False, environ={})
    with pytest.raises(ConfigError):
        TelnyxConfig.for_serve(loopback=False, environ={"TELNYX_PUBLIC_KEY": "not a key"})
    env = {"TELNYX_PUBLIC_KEY": PUBLIC_KEY.decode(), "TELNYX_CODEC": "pcma"}
    assert TelnyxConfig.for_serve(loopback=False, environ=env).law is AudioEncoding.ALAW
    with pytest.raises(ConfigError, match="TELNYX_CODEC"):
        TelnyxConfig.from_env({"TELNYX_CODEC": "G722"})
