"""Reading and writing audio files, with errors that name the file and the fix."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxpipe.errors import AudioFormatError

SUPPORTED = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
MIN_RATE, MAX_RATE = 8_000, 192_000


@dataclass(frozen=True)
class DecodedAudio:
    """Mono PCM16 audio at ``sample_rate``, with where it came from."""

    path: Path
    pcm16: bytes
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def duration_ms(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate * 1000


def load_audio(path: Path, sample_rate: int, *, max_secs: float | None = None) -> DecodedAudio:
    """Decode any common rate and channel layout, mix to mono, resample to ``sample_rate``.

    Raises :class:`AudioFormatError` for a missing, empty, truncated or
    unsupported file, for anything that is not a regular file (a FIFO would
    block the read for ever; a symlink loop or a directory named ``x.wav`` is
    said to be what it is), and, with ``max_secs``, for a recording longer than
    that, judged from its header before anything is decoded (an hour of audio
    once took 1.8 GB). Clipping is kept as it is (it is the caller's audio).
    """
    _require_regular_file(path)
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: file is empty", hint="record or copy the file again")
    if max_secs is not None:
        _require_at_most(path, max_secs)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFormatError(
            f"{path}: not readable audio ({exc})",
            hint=f"use WAV or FLAC ({', '.join(sorted(SUPPORTED))})",
        ) from exc
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFormatError(
            f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
            hint="resample the file (for example with sox) to 16 or 24 kHz",
        )
    if data.shape[0] == 0:
        raise AudioFormatError(f"{path}: holds no audio samples", hint="check the recording")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return DecodedAudio(path, pcm, sample_rate, int(rate), int(data.shape[1]))


def _require_regular_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        kind = "a broken symlink" if path.is_symlink() else None
        raise AudioFormatError(f"{path}: {kind or 'no such file'}") from None
    except OSError as exc:  # ELOOP: a symlink loop
        raise AudioFormatError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise AudioFormatError(f"{path}: not a regular file ({_kind(mode)})")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a file"


def _require_at_most(path: Path, max_secs: float) -> None:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFormatError(
            f"{path}: not readable audio ({exc})",
            hint=f"use WAV or FLAC ({', '.join(sorted(SUPPORTED))})",
        ) from exc
    if info.samplerate > 0 and info.frames / info.samplerate > max_secs:
        raise AudioFormatError(
            f"{path}: {info.frames / info.samplerate:.0f} s of audio; the limit is {max_secs:g} s",
            hint="split the recording, or raise the limit",
        )


def write_wav(path: Path, pcm16: bytes, sample_rate: int, channels: int = 1) -> None:
    """Write PCM16 to a WAV atomically: a reader never sees half a file."""
    samples = np.frombuffer(pcm16[: len(pcm16) // (2 * channels) * 2 * channels], dtype="<i2")
    partial = path.with_name(path.name + ".partial")
    try:
        sf.write(
            str(partial), samples.reshape(-1, channels), sample_rate, subtype="PCM_16", format="WAV"
        )
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AudioFormatError(
            f"{path}: cannot write ({exc.strerror})",
            hint="check the directory exists and is writable",
        ) from exc
