"""Server VAD turn detection from per-frame speech probabilities.

The driver scores 32 ms frames (512 samples at 16 kHz) with Silero; this
module decides, from those scores and the session's ``threshold``,
``prefix_padding_ms`` and ``silence_duration_ms``, where speech started and
stopped. Positions are milliseconds of audio written to the input buffer
since the session started, the protocol's ``audio_start_ms``/``audio_end_ms``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from voxpipe.realtime_server.session_config import TurnConfig

VAD_RATE = 16_000
VAD_FRAME_SAMPLES = 512
VAD_FRAME_MS = VAD_FRAME_SAMPLES * 1000 // VAD_RATE
HYSTERESIS = 0.15
"""Speech continues until the score falls this far below the threshold (Silero's rule)."""
SPECULATE_AFTER_MS = 160
"""A pause this long is worth a speculative transcription; shorter ones are gaps between words."""


@dataclass(frozen=True)
class VadFrame:
    """One frame to score: float32 samples in [-1, 1] and where it lies."""

    start_ms: int
    end_ms: int
    samples: np.ndarray


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began; ``audio_start_ms`` already includes the prefix padding."""

    audio_start_ms: int


@dataclass(frozen=True)
class SilenceBegan:
    """Speech paused at ``speech_end_ms``; the turn ends if the pause lasts."""

    speech_end_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """Silence lasted ``silence_duration_ms``; the turn ends at ``audio_end_ms``.

    ``speech_end_ms`` is where the silence began (the last :class:`SilenceBegan`).
    """

    audio_end_ms: int
    speech_end_ms: int


TurnEvent = SpeechStarted | SilenceBegan | SpeechStopped


class VadChunker:
    """Cuts a stream of 16 kHz PCM16 into whole scoring frames."""

    def __init__(self, base_ms: int = 0) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_done = 0
        self._base_ms = base_ms

    def feed(self, pcm16_16k: bytes) -> list[VadFrame]:
        """Frames completed by ``pcm16_16k``."""
        samples = np.frombuffer(pcm16_16k, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate((self._pending, samples))
        frames = []
        while len(self._pending) >= VAD_FRAME_SAMPLES:
            chunk, self._pending = (
                self._pending[:VAD_FRAME_SAMPLES],
                self._pending[VAD_FRAME_SAMPLES:],
            )
            start = self._base_ms + self._samples_done * 1000 // VAD_RATE
            self._samples_done += VAD_FRAME_SAMPLES
            end = self._base_ms + self._samples_done * 1000 // VAD_RATE
            frames.append(VadFrame(start, end, chunk))
        return frames


class VadState(enum.Enum):
    """Whether the user is speaking."""

    SILENT = "silent"
    SPEAKING = "speaking"


class TurnDetector:
    """Speech start/stop decisions from frame scores."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.state = VadState.SILENT
        self._silence_since_ms: int | None = None
        self._last_stop_ms = 0

    def reset(self, position_ms: int) -> None:
        """Forget any speech in progress (the buffer was cleared or committed)."""
        self.state = VadState.SILENT
        self._silence_since_ms = None
        self._last_stop_ms = position_ms

    def update(
        self, frame_start_ms: int, frame_end_ms: int, probability: float
    ) -> TurnEvent | None:
        """Feed one frame's score; returns the turn event it completes, if any."""
        if self.state is VadState.SILENT:
            if probability < self.config.threshold:
                return None
            self.state = VadState.SPEAKING
            self._silence_since_ms = None
            start = max(self._last_stop_ms, frame_start_ms - self.config.prefix_padding_ms)
            return SpeechStarted(audio_start_ms=max(0, start))
        if probability >= self.config.threshold - HYSTERESIS:
            self._silence_since_ms = None
            return None
        if self._silence_since_ms is None:
            self._silence_since_ms = frame_start_ms
        silence_start = self._silence_since_ms
        silent_ms = frame_end_ms - silence_start
        if silent_ms < self.config.silence_duration_ms:
            # Announce the pause once, on the frame that crosses SPECULATE_AFTER_MS.
            if silent_ms >= SPECULATE_AFTER_MS > silent_ms - (frame_end_ms - frame_start_ms):
                return SilenceBegan(speech_end_ms=silence_start)
            return None
        self.state = VadState.SILENT
        self._silence_since_ms = None
        self._last_stop_ms = frame_end_ms
        return SpeechStopped(audio_end_ms=frame_end_ms, speech_end_ms=silence_start)
