"""The input audio buffer: validated appends, positions in ms, commits.

Positions count milliseconds of audio the client has written since the
session started; that is the clock of ``audio_start_ms``/``audio_end_ms``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

import soxr

from voxpipe.audio import AudioFormat, bytes_per_ms, bytes_to_ms
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.protocol_errors import ErrorCode, invalid_request, invalid_value
from voxpipe.realtime_server.turn_detection import VAD_RATE, VadChunker, VadFrame
from voxpipe.telephony.resample import StreamResampler

MIN_COMMIT_MS = 100
MAX_BUFFER_MS = 600_000
"""The most a buffer holds uncommitted (10 minutes; 29 MB of 24 kHz PCM16). Under
server VAD silence is trimmed long before; without it, a client that never commits
gets an error on the append that would pass this, instead of the server holding
audio for ever (20 minutes once sat there)."""


@dataclass(frozen=True)
class CommittedAudio:
    """Audio taken out of the buffer for one user item."""

    data: bytes
    audio_format: AudioFormat
    start_ms: int
    end_ms: int


def decode_append(audio_b64: str, fmt: AudioFormat) -> bytes:
    """The raw bytes of an ``input_audio_buffer.append``, checked against ``fmt``."""
    try:
        data = base64.b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_value(
            "audio", "Invalid 'audio': expected base64-encoded audio bytes."
        ) from None
    container = codec.container_kind(data)
    if container is not None:
        raise invalid_value(
            "audio",
            f"Invalid 'audio': expected raw {fmt.value} samples, but got {container}. "
            "Send raw audio in the session's input format.",
        )
    if fmt is AudioFormat.PCM16_24K and len(data) % 2:
        raise invalid_value(
            "audio",
            "Invalid 'audio': audio/pcm is 16-bit, so the byte count must be even; "
            f"got {len(data)}.",
        )
    return data


class InputAudioBuffer:
    """Audio appended since the last commit or clear."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._data = bytearray()
        self.start_ms = 0
        self._chunker: VadChunker | None = None
        self._resampler: Callable[[bytes], bytes] | None = None

    @property
    def written_ms(self) -> int:
        """Position of the end of the buffer."""
        return self.start_ms + bytes_to_ms(len(self._data), self.format)

    @property
    def buffered_ms(self) -> float:
        """Milliseconds held now."""
        return len(self._data) / bytes_per_ms(self.format)

    def set_format(self, fmt: AudioFormat) -> None:
        """Change the input format; held audio in the old format is dropped."""
        if fmt is not self.format:
            self.format = fmt
            self.clear()

    def enable_vad(self, enabled: bool) -> None:
        """Start or stop cutting frames for the VAD from this position on."""
        self._chunker = VadChunker(base_ms=self.written_ms) if enabled else None
        self._resampler = _vad_resampler(codec.format_rate(self.format)) if enabled else None

    def append(self, data: bytes) -> list[VadFrame]:
        """Add audio; returns the VAD frames it completes. Refused past ``MAX_BUFFER_MS``."""
        if self.buffered_ms + len(data) / bytes_per_ms(self.format) > MAX_BUFFER_MS:
            raise invalid_value(
                "audio",
                f"The input audio buffer holds at most {MAX_BUFFER_MS // 1000} s; "
                "commit or clear it before appending more.",
            )
        self._data.extend(data)
        if self._chunker is None or self._resampler is None:
            return []
        return self._chunker.feed(self._resampler(codec.decode(data, self.format)))

    def drop_before(self, position_ms: int) -> None:
        """Forget audio before ``position_ms`` (silence no turn can reach any more)."""
        per_ms = bytes_per_ms(self.format)
        drop_ms = min(position_ms - self.start_ms, int(self.buffered_ms))
        if drop_ms > 0:
            del self._data[: drop_ms * per_ms]
            self.start_ms += drop_ms

    def clear(self) -> None:
        """Drop everything held."""
        self.start_ms = self.written_ms
        self._data.clear()
        if self._chunker is not None:
            self.enable_vad(True)

    def commit_all(self) -> CommittedAudio:
        """Take the whole buffer, which must hold at least 100 ms."""
        if self.buffered_ms < MIN_COMMIT_MS:
            raise invalid_request(
                ErrorCode.COMMIT_EMPTY,
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                f"{self.buffered_ms:.2f}ms of audio.",
            )
        return self.commit_range(self.start_ms, self.written_ms)

    def peek_range(self, start_ms: int, end_ms: int) -> bytes:
        """The audio of ``[start_ms, end_ms)`` still held, without taking it."""
        per_ms = bytes_per_ms(self.format)
        begin = max(0, (start_ms - self.start_ms) * per_ms)
        end = max(begin, min(len(self._data), (end_ms - self.start_ms) * per_ms))
        return bytes(self._data[begin:end])

    def commit_range(self, start_ms: int, end_ms: int) -> CommittedAudio:
        """Take ``[start_ms, end_ms)``; audio before it is dropped, after it is kept."""
        per_ms = bytes_per_ms(self.format)
        begin = max(0, (start_ms - self.start_ms) * per_ms)
        end = max(begin, min(len(self._data), (end_ms - self.start_ms) * per_ms))
        taken = bytes(self._data[begin:end])
        del self._data[:end]
        committed = CommittedAudio(
            taken, self.format, max(start_ms, self.start_ms), self.start_ms + end // per_ms
        )
        self.start_ms += end // per_ms
        return committed


def _vad_resampler(rate: int) -> Callable[[bytes], bytes]:
    """PCM16 at ``rate`` to the VAD's 16 kHz, continuous across appends.

    A streaming resampler, 3x cheaper than one-shot calls. soxr's stream
    returns 24 kHz audio a chunk or two late, but from G.711's 8 kHz it holds
    back 100 ms and then releases 104 ms blocks, which put every speech start
    (a barge-in) up to 200 ms late; 8 kHz goes through a FIR that returns each
    chunk at once (4 ms of filter delay).
    """
    if rate == codec.G711_RATE:
        return StreamResampler(rate, VAD_RATE).process
    stream = soxr.ResampleStream(rate, VAD_RATE, 1, dtype="int16")
    return lambda pcm: stream.resample_chunk(codec.pcm16_array(pcm)).astype("<i2").tobytes()
