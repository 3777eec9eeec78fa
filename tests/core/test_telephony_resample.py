"""Resampling a phone stream chunk for chunk: exact lengths, a fixed small delay, the band kept."""

from __future__ import annotations

import numpy as np
import pytest

from voxpipe.errors import ConfigError
from voxpipe.telephony.resample import StreamResampler


def tone(rate: int, hz: float, ms: int) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * hz * t) * 10_000).astype("<i2")


def run(resampler: StreamResampler, audio: np.ndarray, chunk_ms: int = 20) -> list[bytes]:
    step = resampler.in_rate * chunk_ms // 1000
    return [resampler.process(audio[i : i + step].tobytes()) for i in range(0, audio.size, step)]


# (from, to, tone, amplitude expected): the phone band passes, what 8 kHz cannot carry does not.
@pytest.mark.parametrize(
    ("in_rate", "out_rate", "hz", "amplitude"),
    [
        (24_000, 8_000, 1_000, 10_000),
        (24_000, 8_000, 3_400, 10_000),
        (24_000, 8_000, 6_000, 0),  # would alias to 2 kHz
        (16_000, 8_000, 300, 10_000),
        (8_000, 16_000, 1_000, 10_000),
        (8_000, 24_000, 2_000, 10_000),
    ],
)
def test_each_chunk_comes_out_at_once_with_the_phone_band_kept(
    in_rate: int, out_rate: int, hz: float, amplitude: float
) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    chunks = run(resampler, tone(in_rate, hz, 1000))
    assert {len(c) for c in chunks} == {out_rate * 20 // 1000 * 2}  # 20 ms in, 20 ms out
    out = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64)[out_rate // 10 :]
    assert np.sqrt((out**2).mean()) * np.sqrt(2) == pytest.approx(amplitude, abs=150)


def test_the_delay_is_small_and_what_it_says() -> None:
    resampler = StreamResampler(24_000, 8_000)
    click = np.zeros(2400, dtype="<i2")
    click[480] = 30_000  # at 20 ms
    out = np.frombuffer(b"".join(run(resampler, click)), dtype="<i2")
    peak_ms = int(np.argmax(np.abs(out))) / 8
    assert peak_ms == pytest.approx(20 + resampler.delay_ms, abs=0.25)
    assert resampler.delay_ms <= 4.5


def test_equal_rates_pass_through_and_odd_ratios_are_refused() -> None:
    assert StreamResampler(8_000, 8_000).process(b"\x01\x02") == b"\x01\x02"
    with pytest.raises(ConfigError):
        StreamResampler(44_100, 8_000)
