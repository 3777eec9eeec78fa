"""Audio byte/millisecond arithmetic."""

from __future__ import annotations

import pytest

from voxpipe.audio import (
    AudioFormat,
    align_to_frame,
    bytes_per_ms,
    bytes_to_ms,
    ms_to_bytes,
    pcm_bytes_per_ms,
    pcm_bytes_to_ms,
)
from voxpipe.errors import AudioFormatError


@pytest.mark.parametrize(
    ("fmt", "per_ms"),
    [(AudioFormat.PCM16_24K, 48), (AudioFormat.G711_ULAW, 8), (AudioFormat.G711_ALAW, 8)],
)
def test_bytes_per_ms_matches_protocol(fmt: AudioFormat, per_ms: int) -> None:
    assert bytes_per_ms(fmt) == per_ms
    assert ms_to_bytes(1000, fmt) == per_ms * 1000


@pytest.mark.parametrize(
    ("n_bytes", "fmt", "expected_ms"),
    [
        (48_000, AudioFormat.PCM16_24K, 1000),
        (47, AudioFormat.PCM16_24K, 0),  # less than a millisecond rounds down
        (95, AudioFormat.PCM16_24K, 1),
        (8_000, AudioFormat.G711_ULAW, 1000),
        (15, AudioFormat.G711_ALAW, 1),
        (0, AudioFormat.PCM16_24K, 0),
    ],
)
def test_bytes_to_ms_rounds_down(n_bytes: int, fmt: AudioFormat, expected_ms: int) -> None:
    assert bytes_to_ms(n_bytes, fmt) == expected_ms


@pytest.mark.parametrize(
    ("rate", "channels", "expected"),
    [(24_000, 1, 48.0), (16_000, 1, 32.0), (8_000, 1, 16.0), (48_000, 2, 192.0), (22_050, 1, 44.1)],
)
def test_pcm_bytes_per_ms(rate: int, channels: int, expected: float) -> None:
    assert pcm_bytes_per_ms(rate, channels=channels) == pytest.approx(expected)


def test_pcm_bytes_to_ms() -> None:
    assert pcm_bytes_to_ms(32_000, 16_000) == pytest.approx(1000.0)


@pytest.mark.parametrize(("n_bytes", "aligned"), [(0, 0), (1, 0), (2, 2), (5, 4), (480, 480)])
def test_align_to_frame(n_bytes: int, aligned: int) -> None:
    assert align_to_frame(n_bytes) == aligned


@pytest.mark.parametrize(
    "call",
    [
        lambda: bytes_to_ms(-1, AudioFormat.PCM16_24K),
        lambda: ms_to_bytes(-1, AudioFormat.G711_ULAW),
        lambda: pcm_bytes_per_ms(0),
        lambda: pcm_bytes_to_ms(-2, 24_000),
    ],
)
def test_invalid_input_raises_audio_format_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(AudioFormatError):
        call()
