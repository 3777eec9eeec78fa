"""A phone call on ``voxpipe serve`` takes the echo guard only when asked, fed by what the
phone output plays. By default it has none: phone networks and handsets cancel echo, and on
a line with no echo the guard silenced the first words of callers who spoke soon after the
bot (the phone-band hearing test lost whole phrases with it on).

A fake Twilio (built to its documentation, ``tests/support/fake_twilio.py``)
on loopback, the embedded Realtime server with a scripted brain: the guard
sits before the server's VAD and judges the caller's audio against the bot's
audio as the phone output sends it, at whatever rate and law the call runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fake_twilio import FakeTwilio, mulaw_recording
from phone_calls import calling, the_call, until
from phone_calls import serving as serve_phones
from realtime_calls import compose

from voxpipe.echo import EchoGuardConfig, Verdict
from voxpipe.processors.echo_guard import EchoGuardProcessor
from voxpipe.transports.telephony.routes import TwilioConfig


@asynccontextmanager
async def phoning(base: str, recording: Path) -> AsyncIterator[FakeTwilio]:
    twilio = FakeTwilio(mulaw_recording(recording))
    stream_url, parameters = await twilio.answer(base)
    async with calling(twilio, stream_url, parameters):
        yield twilio


async def test_a_phone_call_judges_its_caller_against_what_it_plays(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], recording)
    async with (
        serve_phones(tmp_path, twilio=TwilioConfig(echo_guard=EchoGuardConfig())) as (base, serve),
        phoning(base, recording) as twilio,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        guard = call.echo_guard
        assert isinstance(guard, EchoGuardProcessor)  # asked for in the phone config
        assert call.graph.echo_guard is guard
        await until(lambda: twilio.loud_ms() > 1500)  # the answer is being heard
        counts = dict(guard.guard.counts)
    # The question passed with nothing played (NO_ECHO); while the bot spoke, the
    # line's silence was judged against what the output played (echo, not speech).
    assert counts[Verdict.NO_ECHO] > 50
    assert counts[Verdict.ECHO] > 20
    assert counts[Verdict.SPEECH] == 0


async def test_a_phone_call_has_no_echo_guard_unless_asked(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 3000], recording)
    async with (
        serve_phones(tmp_path, twilio=TwilioConfig()) as (base, serve),
        phoning(base, recording),
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        assert call.echo_guard is None and call.graph.echo_guard is None
        assert serve.config.call.echo_guard is not None  # a browser's call still has it
