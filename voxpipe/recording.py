"""Tracks of PCM16 audio placed at time offsets, for call recordings.

Pure byte arithmetic: a caller track and a bot track that share the call's
time origin, so ``call.wav`` shows who spoke when, overlaps included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Track:
    """Mono PCM16 at ``sample_rate``; writes land at a sample offset, gaps are silence."""

    sample_rate: int
    _samples: bytearray = field(default_factory=bytearray)

    @property
    def duration_ms(self) -> float:
        return len(self._samples) / 2 / self.sample_rate * 1000

    def write_at(self, offset_ms: float, pcm16: bytes) -> None:
        start = int(offset_ms * self.sample_rate / 1000) * 2
        end = start + len(pcm16) - (len(pcm16) % 2)
        if end > len(self._samples):
            self._samples.extend(bytes(end - len(self._samples)))
        self._samples[start:end] = pcm16[: end - start]

    def append(self, pcm16: bytes) -> None:
        self.write_at(self.duration_ms, pcm16)

    def pcm(self) -> bytes:
        return bytes(self._samples)


def interleave(left: bytes, right: bytes) -> bytes:
    """Two mono PCM16 tracks -> one stereo PCM16 stream, the shorter padded with silence."""
    a = np.frombuffer(left[: len(left) // 2 * 2], dtype="<i2")
    b = np.frombuffer(right[: len(right) // 2 * 2], dtype="<i2")
    n = max(a.size, b.size)
    out = np.zeros((n, 2), dtype="<i2")
    out[: a.size, 0] = a
    out[: b.size, 1] = b
    return out.tobytes()
