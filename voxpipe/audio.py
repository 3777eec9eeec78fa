"""Audio size and duration arithmetic, as small pure functions.

The Realtime protocol counts audio in milliseconds (``audio_end_ms``,
``audio_start_ms``) while transports move bytes; these helpers convert
between the two for the formats the protocol knows. PCM16 at 24 kHz is
48 bytes per millisecond; G.711 (mu-law or A-law at 8 kHz) is 8.
"""

from __future__ import annotations

import enum

from voxpipe.errors import AudioFormatError


class AudioFormat(enum.Enum):
    """The audio encodings of the Realtime protocol."""

    PCM16_24K = "audio/pcm"
    G711_ULAW = "audio/pcmu"
    G711_ALAW = "audio/pcma"


_BYTES_PER_MS: dict[AudioFormat, int] = {
    AudioFormat.PCM16_24K: 48,  # 24 000 samples/s * 2 bytes / 1000
    AudioFormat.G711_ULAW: 8,  # 8 000 samples/s * 1 byte / 1000
    AudioFormat.G711_ALAW: 8,
}


def bytes_per_ms(fmt: AudioFormat) -> int:
    """Bytes of encoded audio per millisecond in ``fmt``."""
    return _BYTES_PER_MS[fmt]


def pcm_bytes_per_ms(sample_rate: int, *, channels: int = 1, sample_width: int = 2) -> float:
    """Bytes per millisecond of raw PCM at any rate (not always a whole number)."""
    if sample_rate <= 0 or channels <= 0 or sample_width <= 0:
        raise AudioFormatError(
            f"invalid PCM layout: rate={sample_rate} channels={channels} width={sample_width}"
        )
    return sample_rate * channels * sample_width / 1000


def bytes_to_ms(n_bytes: int, fmt: AudioFormat) -> int:
    """Whole milliseconds in ``n_bytes`` of ``fmt``, rounded down.

    Rounding down matters: a truncate point computed from bytes must never
    exceed the audio the server holds.
    """
    if n_bytes < 0:
        raise AudioFormatError(f"negative byte count: {n_bytes}")
    return n_bytes // _BYTES_PER_MS[fmt]


def ms_to_bytes(duration_ms: int, fmt: AudioFormat) -> int:
    """Bytes needed for ``duration_ms`` of ``fmt``."""
    if duration_ms < 0:
        raise AudioFormatError(f"negative duration: {duration_ms} ms")
    return duration_ms * _BYTES_PER_MS[fmt]


def pcm_bytes_to_ms(
    n_bytes: int, sample_rate: int, *, channels: int = 1, sample_width: int = 2
) -> float:
    """Duration in milliseconds of ``n_bytes`` of raw PCM at any rate."""
    if n_bytes < 0:
        raise AudioFormatError(f"negative byte count: {n_bytes}")
    return n_bytes / pcm_bytes_per_ms(sample_rate, channels=channels, sample_width=sample_width)


def align_to_frame(n_bytes: int, *, channels: int = 1, sample_width: int = 2) -> int:
    """Largest byte count <= ``n_bytes`` that ends on a whole sample frame."""
    frame = channels * sample_width
    if frame <= 0:
        raise AudioFormatError(f"invalid frame size: {frame}")
    return n_bytes - (n_bytes % frame)
