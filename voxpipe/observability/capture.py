"""Where each caller audio frame sits in the caller's audio, and when it was captured.

A VAD names a speech end by position ("``stop_secs`` before the end of the
chunk that made me decide"); the latency budget needs it as a time on the
call's clock. The log maps one to the other: frames are appended in the
order they were captured, each with its length, so a position falls in
exactly one frame and that frame's capture time plus the offset into it is
when the voice at that position was captured.

A transport that knows its capture times keeps one (the file transport
does); otherwise the latency observer keeps its own from the frames it sees
leave the input. Memory is bounded: only the newest ``keep`` frames are kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_KEPT = 1_500  # 30 s of 20 ms chunks: far more than any VAD stop delay


@dataclass(frozen=True)
class CapturedChunk:
    """One caller frame: positions ``[start_ms, end_ms)`` of the caller's audio."""

    frame_id: int
    start_ms: float
    end_ms: float
    captured_ms: float

    def captured_at(self, position_ms: float) -> float:
        """When the audio at ``position_ms`` (inside this chunk) was captured."""
        return self.captured_ms + (position_ms - self.start_ms)


class CaptureLog:
    """Caller frames by id and by position; time is passed in.

    Args:
        keep: how many of the newest frames are remembered.
    """

    def __init__(self, keep: int = DEFAULT_KEPT) -> None:
        if keep <= 0:
            raise ValueError("keep must be positive")
        self._keep = keep
        self._chunks: deque[CapturedChunk] = deque()
        self._by_frame: dict[int, CapturedChunk] = {}
        self._position_ms = 0.0

    @property
    def position_ms(self) -> float:
        """Milliseconds of caller audio logged so far."""
        return self._position_ms

    def __len__(self) -> int:
        return len(self._chunks)

    def append(self, frame_id: int, duration_ms: float, captured_ms: float) -> CapturedChunk:
        """The next caller frame, ``duration_ms`` long, was captured at ``captured_ms``."""
        if duration_ms < 0:
            raise ValueError("duration_ms must not be negative")
        start = self._position_ms
        chunk = CapturedChunk(frame_id, start, start + duration_ms, captured_ms)
        self._position_ms = chunk.end_ms
        if len(self._chunks) >= self._keep:
            oldest = self._chunks.popleft()
            self._by_frame.pop(oldest.frame_id, None)
        self._chunks.append(chunk)
        self._by_frame[frame_id] = chunk
        return chunk

    def by_frame(self, frame_id: int) -> CapturedChunk | None:
        """The chunk of frame ``frame_id``; None if it was never logged or is forgotten."""
        return self._by_frame.get(frame_id)

    def at_position(self, position_ms: float) -> CapturedChunk | None:
        """The chunk holding ``position_ms`` (``start <= p < end``), newest first.

        None when the position is before what is remembered, past what was
        logged, or negative.
        """
        for chunk in reversed(self._chunks):
            if chunk.start_ms <= position_ms < chunk.end_ms:
                return chunk
            if chunk.end_ms <= position_ms:
                return None
        return None
