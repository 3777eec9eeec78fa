"""A caller heard over the phone band: mu-law at 8 kHz through the telephony path to local Whisper.

Real parts on loopback: aiohttp serving the Twilio routes, the voxpipe graph,
the embedded Realtime server whose brain transcribes with the local Whisper
(tiny.en) and answers from a script; the far end is the fake Twilio, which
sends the caller's recording as a phone network carries it (8 kHz mu-law,
20 ms a message, at real time). The server hears the caller through
everything a phone call goes through (the stream, the transport, the G.711
the realtime session takes, the server's resampling to Whisper's 16 kHz);
the same lines at 16 kHz, straight into the same engine, are the baseline.

Measured by benchmarks/telephony.py (24 lines, Piper's voice): word error rate
0.056 at 8 kHz mu-law through the phone path against 0.052 at 16 kHz, digit
by digit (1.08x); the goal is within 1.5x, and two misheard words more are
allowed here so a slip on five lines is not a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import soundfile as sf
from fake_twilio import FakeTwilio, mulaw_recording
from phone_calls import calling, the_call, until
from phone_calls import serving as serve_phones
from realtime_calls import compose

from voxpipe.engines import shared_stt
from voxpipe.evaluation import normalise, word_error_rate
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.telephony.routes import TwilioConfig

LINES = [
    "My account number is 4 7 2 9 1 6.",
    "Please send the invoice to 221 Baker Street, London.",
    "I would like to book an appointment with Doctor Patel on Tuesday.",
    "Maria Gonzalez recommended your clinic to me.",
    "My flight leaves at 7:45 in the morning from Chicago.",
]
PHONE_BAND_GOAL = 1.5  # 8 kHz word error rate, at most this times the 16 kHz one


class HearingBrain(ScriptedBrain):
    """Answers from a script and hears the caller with the local Whisper."""

    def __init__(self, stt: Any) -> None:
        super().__init__(["Okay."], pace=2.0)
        self.stt = stt

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        import asyncio

        text: str = await asyncio.to_thread(self.stt.transcribe, pcm16, sample_rate)
        return text


async def test_a_mulaw_caller_is_heard_within_the_phone_band_goal(
    make_speech: Any, tmp_path: Path
) -> None:
    stt = await shared_stt()  # loaded before the call, so the caller's first words are heard
    parts: list[str | int] = [1000]
    for line in LINES:
        parts += [line, 1500]
    recording = tmp_path / "caller.wav"
    spans = compose(make_speech, [*parts, 1500], recording)
    pcm, rate = sf.read(str(recording), dtype="int16")
    wideband = " ".join(
        stt.transcribe(pcm[rate * a // 1000 : rate * b // 1000].tobytes(), rate) for a, b in spans
    )

    async with serve_phones(tmp_path, brain=HearingBrain(stt), twilio=TwilioConfig()) as (
        base,
        serve,
    ):
        twilio = FakeTwilio(mulaw_recording(recording))
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            timeline = the_call(serve).timeline
            end_ms = spans[-1][1] + 2500  # the last line and the silence that ends its turn

            def transcribed() -> bool:
                # Every line is a turn of its own (the pauses between them end turns);
                # the server's VAD may run behind the fake's clock on a loaded machine.
                stopped = timeline.of(EventKind.USER_STOPPED_SPEAKING)
                heard = timeline.of(EventKind.USER_TRANSCRIPT)
                return len(stopped) >= len(LINES) and len(heard) >= len(stopped)

            await until(lambda: twilio.now_ms() > twilio.caller_sent_ms(end_ms), 60)
            await until(transcribed, 60)
            phone = " ".join(
                str(e.data.get("text", "")) for e in timeline.of(EventKind.USER_TRANSCRIPT)
            )

    said = " ".join(LINES)
    wideband_wer = word_error_rate(said, wideband, digits=True)
    phone_wer = word_error_rate(said, phone, digits=True)
    # Piper's voice varies run to run, and so does Whisper's hearing of it at either rate
    # (the name alone came back as "Marie against all", "where he against all us", "Re
    # against all is" in three runs): three words on five lines are slips, not a trend
    # (a line 90 % wrong is ten words; 0.135 against 0.038 was seen with nothing wrong).
    slips = 3 / len(normalise(said).split())
    print(f"\nphone-band WER {phone_wer:.3f} against {wideband_wer:.3f} at 16 kHz: {phone!r}")
    assert phone_wer <= PHONE_BAND_GOAL * wideband_wer + slips, (phone, wideband)
    assert phone_wer <= 0.25, phone  # and the lines were heard at all
