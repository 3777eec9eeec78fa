"""The bot's G.711 to the provider byte for byte, through pipecat's output chunking.

When the brain speaks the caller's law (:class:`~voxpipe.frames.G711OutputAudioFrame`),
pipecat's output transport still cuts the audio into its own 20 ms chunks,
as PCM, and the chunks it makes carry no G.711. Re-encoding that PCM would
not give the same bytes back (mu-law has two codes for zero, and the brain's
encoder need not pick the one ours would), so the output keeps the bytes the
frames brought, in order, and each chunk takes as many as it has samples.
Each taken run is checked against the chunk (decoding is a table lookup): a
chunk the bytes do not match (silence pipecat padded a reply's end with, or
audio that never came as G.711) is encoded from its PCM instead, and the
bytes held are dropped, so a mismatch never carries into the next chunk.
An interruption drops what is held along with pipecat's queued chunks, and
a chunk the output drops unsent takes its bytes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxpipe.telephony.codec import AudioEncoding


@dataclass
class PassthroughCounts:
    """Bytes of the bot's G.711 sent as the brain made them, and encoded here."""

    passed: int = 0
    encoded: int = 0


class G711Passthrough:
    """The G.711 behind the PCM chunks an output writes (see the module docstring)."""

    def __init__(self, law: AudioEncoding) -> None:
        self.law = law
        self.counts = PassthroughCounts()
        self._held = bytearray()

    @property
    def held(self) -> int:
        """Bytes brought and not yet sent."""
        return len(self._held)

    def brought(self, g711: bytes) -> None:
        """A frame brought these bytes (in this law), ahead of the chunks made from it."""
        self._held += g711

    def dropped(self) -> None:
        """An interruption: the chunks these bytes were for will never be written."""
        self._held.clear()

    def skipped(self, pcm8k: bytes) -> None:
        """A chunk the output dropped unsent (late audio after a cut): its bytes go too."""
        self.chunk(pcm8k, count=False)

    def chunk(self, pcm8k: bytes, *, count: bool = True) -> bytes:
        """The G.711 for one chunk of PCM16 at 8 kHz: the bytes held where they match it."""
        samples = len(pcm8k) // 2
        take = bytes(self._held[:samples])
        if take and self.law.decode(take) == pcm8k[: 2 * len(take)]:
            del self._held[: len(take)]
            rest = self.law.encode(pcm8k[2 * len(take) :])
        else:
            self._held.clear()
            take, rest = b"", self.law.encode(pcm8k)
        if count:
            self.counts.passed += len(take)
            self.counts.encoded += len(rest)
        return take + rest
