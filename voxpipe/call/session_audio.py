"""Which caller audio sits where in a session's input: a log of ``input_audio_buffer.append``.

The Realtime protocol places server VAD decisions on the session's own audio
line (``audio_start_ms``/``audio_end_ms``: milliseconds of audio appended
since the session began), and says nothing about wall-clock time. To turn a
position back into "which of our frames, sent when", the service logs every
append here: the position range it covers and, for live caller audio, the
pipeline frame it came from. Audio replayed into a new session (after a
rollover or reconnect) advances the position but belongs to no frame, so a
position inside it is known to be unknown rather than guessed.

The position restarts at 0 with every session (:meth:`SessionAudioLog.new_session`).
Memory is bounded: appends older than ``keep_ms`` of audio are dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PCM16_24K_BYTES_PER_MS = 48  # the service's session format: 24 kHz mono PCM16


@dataclass(frozen=True)
class AudioAppended:
    """One ``input_audio_buffer.append``: session positions ``[start_ms, end_ms)``.

    ``frame_id`` is the caller ``InputAudioRawFrame`` the audio came from, or
    None for replayed audio; ``sent_at_ms`` is when it went out (local clock).
    """

    start_ms: float
    end_ms: float
    frame_id: int | None
    sent_at_ms: float


@dataclass(frozen=True)
class AudioLocated:
    """Where a session position falls: ``offset_ms`` into the append that holds it."""

    append: AudioAppended
    offset_ms: float

    @property
    def frame_id(self) -> int | None:
        """The caller frame holding the position, None when the audio was replayed."""
        return self.append.frame_id


class SessionAudioLog:
    """The audio this session was sent, by position; time is always passed in.

    Args:
        bytes_per_ms: size of one millisecond of the session's input format.
        keep_ms: how much audio (by position) is remembered behind the newest.
    """

    def __init__(
        self, *, bytes_per_ms: int = PCM16_24K_BYTES_PER_MS, keep_ms: float = 60_000
    ) -> None:
        if bytes_per_ms <= 0 or keep_ms <= 0:
            raise ValueError("bytes_per_ms and keep_ms must be positive")
        self._bytes_per_ms = bytes_per_ms
        self._keep_ms = keep_ms
        self._appends: deque[AudioAppended] = deque()
        self._position_ms = 0.0

    @property
    def position_ms(self) -> float:
        """Milliseconds of audio appended to this session so far."""
        return self._position_ms

    def __len__(self) -> int:
        return len(self._appends)

    def new_session(self) -> None:
        """A new session began: its audio line starts again at 0."""
        self._appends.clear()
        self._position_ms = 0.0

    def on_append(self, n_bytes: int, *, frame_id: int | None, now_ms: float) -> AudioAppended:
        """``n_bytes`` of audio were appended at ``now_ms`` (``frame_id`` None: replayed)."""
        if n_bytes < 0:
            raise ValueError("n_bytes must not be negative")
        start = self._position_ms
        self._position_ms = start + n_bytes / self._bytes_per_ms
        entry = AudioAppended(start, self._position_ms, frame_id, now_ms)
        if n_bytes:
            self._appends.append(entry)
            self._prune()
        return entry

    def locate(self, position_ms: float) -> AudioLocated | None:
        """The append whose audio ends at or runs through ``position_ms``.

        A position names the instant after that much audio, so it belongs to
        the append holding the audio just before it (``start < p <= end``);
        position 0 belongs to the first append. None when the position was
        pruned, is past what was sent, or nothing was sent.
        """
        for entry in reversed(self._appends):
            if entry.start_ms < position_ms <= entry.end_ms or position_ms == entry.start_ms == 0:
                return AudioLocated(entry, position_ms - entry.start_ms)
            if entry.end_ms < position_ms:
                return None
        return None

    def sent_at(self, frame_id: int) -> float | None:
        """When caller frame ``frame_id`` went out in this session; None if not, or forgotten."""
        for entry in reversed(self._appends):
            if entry.frame_id == frame_id:
                return entry.sent_at_ms
        return None

    def _prune(self) -> None:
        horizon = self._position_ms - self._keep_ms
        while self._appends and self._appends[0].end_ms <= horizon:
            self._appends.popleft()
