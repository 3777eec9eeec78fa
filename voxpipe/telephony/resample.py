"""Streaming resampling between the phone's 8 kHz and the pipeline's rates, chunk for chunk.

A stream resampler from a general library (soxr, as pipecat's serializers use
it) buffers internally and returns audio in irregular blocks: from 24 to
8 kHz at its default quality, nothing for the first 140 ms, then 137 ms at
a time. A phone's playout position is counted from the audio sent, so the
output must leave as it comes: 20 ms in, 20 ms out. Rates here are small
integer ratios (24 -> 8, 16 -> 8, 8 -> 16 kHz), so a windowed-sinc FIR run
over the stream, with the filter's history carried from chunk to chunk, does
it with a fixed delay of 4 ms and the same length out as in.
"""

from __future__ import annotations

import math

import numpy as np

from voxpipe.errors import ConfigError

MAX_FACTOR = 6
_TAPS_PER_FACTOR = 64
_KAISER_BETA = 8.0
_PASSBAND = 0.92  # of the lower rate's Nyquist frequency


class StreamResampler:
    """PCM16 mono from ``in_rate`` to ``out_rate``, one chunk at a time (a small integer ratio)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        common = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // common, in_rate // common
        if min(in_rate, out_rate) <= 0 or max(self.up, self.down) > MAX_FACTOR:
            raise ConfigError(f"cannot resample {in_rate} Hz to {out_rate} Hz in a phone stream")
        self.in_rate, self.out_rate = in_rate, out_rate
        self._taps = _lowpass(self.up, self.down)
        self._history = np.zeros(self._taps.size - 1, dtype=np.float32)
        self._phase = 0  # where the next output sample falls in the filtered stream

    @property
    def delay_ms(self) -> float:
        """How far the output lags its input (the filter's group delay)."""
        return (self._taps.size - 1) / 2 / (self.in_rate * self.up) * 1000

    def process(self, pcm16: bytes) -> bytes:
        """Resample the next chunk; ``in_rate``-multiples of 20 ms give exact lengths out."""
        if self.up == self.down:
            return pcm16
        x = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.float32)
        upsampled = np.zeros(x.size * self.up, dtype=np.float32)
        upsampled[:: self.up] = x
        stream = np.concatenate([self._history, upsampled])
        filtered = np.convolve(stream, self._taps, mode="valid")
        self._history = stream[stream.size - self._history.size :]
        out = filtered[self._phase :: self.down]
        self._phase = (self._phase - filtered.size) % self.down
        return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()


def _lowpass(up: int, down: int) -> np.ndarray:
    """A Kaiser-windowed sinc at the upsampled rate, cutting below the lower Nyquist frequency."""
    length = _TAPS_PER_FACTOR * max(up, down) + 1
    cutoff = _PASSBAND * 0.5 / max(up, down)  # in cycles per upsampled sample
    n = np.arange(length) - (length - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(length, _KAISER_BETA)
    normalised: np.ndarray = (taps * up / taps.sum()).astype(np.float32)
    return normalised
