"""Audio conversion between the protocol's formats and PCM16.

G.711 mu-law and A-law are table codecs (ITU-T G.711); resampling uses
soxr one chunk at a time, which is exact in duration and good enough for
voice. Pure functions over bytes: no I/O, no state.
"""

from __future__ import annotations

import numpy as np
import soxr

from voxpipe.audio import AudioFormat

PROTOCOL_PCM_RATE = 24_000
G711_RATE = 8_000


def format_rate(fmt: AudioFormat) -> int:
    """The sample rate of ``fmt``."""
    return PROTOCOL_PCM_RATE if fmt is AudioFormat.PCM16_24K else G711_RATE


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()


def _nearest_code_table(decode: np.ndarray) -> np.ndarray:
    """For each 16-bit sample value, the G.711 code whose decoding is nearest."""
    order = np.argsort(decode, kind="stable")
    levels = decode[order].astype(np.int32)
    samples = np.arange(-32768, 32768, dtype=np.int32)
    upper = np.clip(np.searchsorted(levels, samples), 1, len(levels) - 1)
    lower = upper - 1
    pick_upper = np.abs(levels[upper] - samples) < np.abs(samples - levels[lower])
    return np.where(pick_upper, order[upper], order[lower]).astype(np.uint8)


_ULAW_ENCODE = _nearest_code_table(_ULAW_DECODE)
_ALAW_ENCODE = _nearest_code_table(_ALAW_DECODE)


def pcm16_array(pcm16: bytes) -> np.ndarray:
    """PCM16 little-endian bytes as an int16 array."""
    return np.frombuffer(pcm16, dtype="<i2")


def resample(pcm16: bytes, from_rate: int, to_rate: int) -> bytes:
    """PCM16 mono ``pcm16`` at ``from_rate`` converted to ``to_rate``."""
    if from_rate == to_rate or not pcm16:
        return pcm16
    out = soxr.resample(pcm16_array(pcm16), from_rate, to_rate)
    return np.asarray(out, dtype="<i2").tobytes()


def decode(data: bytes, fmt: AudioFormat) -> bytes:
    """Audio in ``fmt`` as PCM16 at the format's own rate."""
    if fmt is AudioFormat.PCM16_24K:
        return data
    table = _ULAW_DECODE if fmt is AudioFormat.G711_ULAW else _ALAW_DECODE
    return table[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def encode(pcm16: bytes, fmt: AudioFormat) -> bytes:
    """PCM16 at the format's own rate, encoded as ``fmt``."""
    if fmt is AudioFormat.PCM16_24K:
        return pcm16
    table = _ULAW_ENCODE if fmt is AudioFormat.G711_ULAW else _ALAW_ENCODE
    return table[pcm16_array(pcm16).astype(np.int32) + 32768].tobytes()


def from_pcm16_24k(pcm16: bytes, fmt: AudioFormat) -> bytes:
    """Protocol-rate PCM16 (24 kHz) converted to ``fmt``."""
    return encode(resample(pcm16, PROTOCOL_PCM_RATE, format_rate(fmt)), fmt)


def to_pcm16(data: bytes, fmt: AudioFormat, rate: int) -> bytes:
    """Audio in ``fmt`` converted to PCM16 at ``rate``."""
    return resample(decode(data, fmt), format_rate(fmt), rate)


_CONTAINER_MAGIC: dict[bytes, str] = {
    b"RIFF": "a WAV container",
    b"OggS": "an Ogg container",
    b"fLaC": "FLAC",
    b"ID3": "MP3",
    b"\x1aE\xdf\xa3": "a WebM container",
}


def container_kind(data: bytes) -> str | None:
    """The container format ``data`` starts with, if it is one (raw audio has none)."""
    for magic, name in _CONTAINER_MAGIC.items():
        if data.startswith(magic):
            return name
    return None
