"""The audio a realtime session carries: PCM16 at 24 kHz, or a phone call's G.711 as it is.

A phone stream brings the caller as G.711 at 8 kHz, and the OpenAI Realtime
protocol takes ``audio/pcmu`` and ``audio/pcma`` both ways (so does voxpipe's
server). Transcoding would decode, resample 8 -> 16 -> 24 kHz, and on the way
back resample 24 -> 8 kHz and encode again, on every 20 ms of every call; so
when the call's transport is a phone stream that offers its G.711
(:class:`CarriesG711`) and the brain speaks the protocol, the session is set
to that law and the caller's bytes go to it unchanged, and the bot's come back
unchanged. Frames a processor changed (the echo guard silencing echo) are
transcoded once, to the same law.

The format is the call's, not a session.update's: pipecat's update (and a
rollover's, a handoff's, a guardrail's) may carry no format, or PCM, and a
session switched to PCM mid-call would play G.711 as static
(:func:`with_audio_formats` pins it on every update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pipecat.services.openai.realtime import events as rt

from voxpipe.audio import AudioFormat
from voxpipe.frames import G711InputAudioFrame
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.resample import StreamResampler

G711_RATE = 8_000

_SessionFormat = rt.PCMAudioFormat | rt.PCMUAudioFormat | rt.PCMAAudioFormat


@runtime_checkable
class CarriesG711(Protocol):
    """A transport whose caller arrives, and whose bot can leave, as G.711 unchanged."""

    @property
    def g711_format(self) -> AudioFormat | None:
        """The law it passes through, or None when it does not (then it takes PCM)."""
        ...


def passthrough_format(transport: object) -> AudioFormat:
    """The session format for a call on ``transport``: its G.711 law, else PCM16 at 24 kHz."""
    if isinstance(transport, CarriesG711) and transport.g711_format is not None:
        return transport.g711_format
    return AudioFormat.PCM16_24K


def session_format(fmt: AudioFormat) -> _SessionFormat:
    """``fmt`` as a ``session.audio.*.format`` object."""
    if fmt is AudioFormat.G711_ULAW:
        return rt.PCMUAudioFormat()
    if fmt is AudioFormat.G711_ALAW:
        return rt.PCMAAudioFormat()
    return rt.PCMAudioFormat()


def with_audio_formats(
    session: rt.SessionProperties, input_format: AudioFormat, output_format: AudioFormat
) -> rt.SessionProperties:
    """``session`` with the call's formats, so that no ``session.update`` changes them.

    A PCM call's update that names no format is left as it is (the session
    keeps what it has, by the protocol's partial merge); any other update
    states the call's formats.
    """
    audio = session.audio or rt.AudioConfiguration()
    audio_in, audio_out = audio.input or rt.AudioInput(), audio.output or rt.AudioOutput()
    pcm = AudioFormat.PCM16_24K
    if input_format is pcm and output_format is pcm and not (audio_in.format or audio_out.format):
        return session
    audio_in = audio_in.model_copy(update={"format": session_format(input_format)})
    audio_out = audio_out.model_copy(update={"format": session_format(output_format)})
    audio = audio.model_copy(update={"input": audio_in, "output": audio_out})
    return session.model_copy(update={"audio": audio})


@dataclass
class G711Counts:
    """Caller audio sent to a G.711 session: passed through or transcoded (bytes of G.711)."""

    passed: int = 0
    transcoded: int = 0


class G711Input:
    """Caller frames to a G.711 session's bytes: the frame's own when they hold, else encoded."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self.law = AudioEncoding.of(fmt)
        self.counts = G711Counts()
        self._resampler: StreamResampler | None = None

    def audio(self, frame: object, pcm: bytes, sample_rate: int) -> bytes:
        """The bytes to append for ``frame`` (whose PCM is ``pcm`` at ``sample_rate``)."""
        if isinstance(frame, G711InputAudioFrame):
            passed = frame.g711_for(self.format)
            if passed is not None:
                self.counts.passed += len(passed)
                return passed
        if self._resampler is None or self._resampler.in_rate != sample_rate:
            self._resampler = StreamResampler(sample_rate, G711_RATE)
        encoded = self.law.encode(self._resampler.process(pcm))
        self.counts.transcoded += len(encoded)
        return encoded
