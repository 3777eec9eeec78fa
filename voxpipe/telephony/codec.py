"""G.711 at 8 kHz, both laws: what phone networks carry, to and from 16-bit PCM.

North America and Japan use mu-law (PCMU, ``audio/x-mulaw``); most of the
rest of the world uses A-law (PCMA, ``audio/x-alaw``). A provider says which
in its stream's ``start``; the call decodes the caller with that law and
encodes the bot with the same one, so no provider has to transcode.
"""

from __future__ import annotations

import audioop
import enum

from voxpipe.audio import AudioFormat
from voxpipe.errors import AudioFormatError


class AudioEncoding(enum.Enum):
    """A G.711 law (8 bits a sample, 8 kHz)."""

    MULAW = "mulaw"
    ALAW = "alaw"

    def decode(self, payload: bytes) -> bytes:
        """G.711 bytes to 16-bit little-endian PCM, sample for sample."""
        if self is AudioEncoding.ALAW:
            return audioop.alaw2lin(payload, 2)
        return audioop.ulaw2lin(payload, 2)

    def encode(self, pcm16: bytes) -> bytes:
        """16-bit little-endian PCM to G.711 bytes."""
        pcm16 = pcm16[: len(pcm16) // 2 * 2]
        if self is AudioEncoding.ALAW:
            return audioop.lin2alaw(pcm16, 2)
        return audioop.lin2ulaw(pcm16, 2)

    @property
    def silence(self) -> int:
        """The byte that encodes zero (what a quiet line carries)."""
        return 0xD5 if self is AudioEncoding.ALAW else 0xFF

    @property
    def audio_format(self) -> AudioFormat:
        """The Realtime protocol's name for this law (``audio/pcmu``, ``audio/pcma``)."""
        return AudioFormat.G711_ALAW if self is AudioEncoding.ALAW else AudioFormat.G711_ULAW

    @classmethod
    def of(cls, fmt: AudioFormat) -> AudioEncoding:
        """The law of a G.711 ``fmt``; PCM has none (an :class:`AudioFormatError`)."""
        if fmt is AudioFormat.G711_ULAW:
            return cls.MULAW
        if fmt is AudioFormat.G711_ALAW:
            return cls.ALAW
        raise AudioFormatError(f"{fmt.value} is not G.711")
