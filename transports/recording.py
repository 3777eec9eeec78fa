"""Both sides of a live call on one time line: what the caller said, what the bot played.

A live transport (the browser's WebRTC, later telephony and rooms) keeps one
:class:`CallRecording`: each caller frame as it arrives, each bot chunk as it
starts playing, on the transport's clock. It answers what the call's
instruments ask a transport (:class:`~voxpipe.processors.observability.sources.CaptureStamps`
and ``PlaybackReports``) and writes ``call.wav`` (caller left, bot right) like
the file transport does.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voxpipe.observability.capture import CaptureLog
from voxpipe.recording import Track, interleave
from voxpipe.transports.audio_file import write_wav


@dataclass(frozen=True)
class BotChunkPlayed:
    """One chunk of bot audio started playing at ``at_ms`` (the recording's clock)."""

    at_ms: float
    duration_ms: float


class CallRecording:
    """The audio of one call and when each piece of it happened.

    Args:
        now_ms: the transport's clock.
        in_sample_rate, out_sample_rate: the rates of caller and bot audio.
        keep_audio: keep the audio for ``call.wav`` (off: only the time stamps
            the instruments need are kept, a bounded amount).
    """

    def __init__(
        self,
        now_ms: Callable[[], float],
        *,
        in_sample_rate: int = 16_000,
        out_sample_rate: int = 24_000,
        keep_audio: bool = True,
    ) -> None:
        self.now_ms = now_ms
        self.started_ms = now_ms()
        self.keep_audio = keep_audio
        self.caller = Track(in_sample_rate)
        self.bot = Track(out_sample_rate)
        self._captures = CaptureLog()
        self.played: list[BotChunkPlayed] = []
        self._max_played = 30_000  # 10 min of 20 ms chunks: what latency lookups need

    @property
    def captures(self) -> CaptureLog:
        """Caller frames by id and position (the latency instruments read it)."""
        return self._captures

    def caller_audio(self, frame_id: int, pcm16: bytes, sample_rate: int, at_ms: float) -> None:
        """A caller frame arrived at ``at_ms``."""
        duration_ms = len(pcm16) / 2 / sample_rate * 1000
        self._captures.append(frame_id, duration_ms, at_ms)
        if self.keep_audio and sample_rate == self.caller.sample_rate:
            self.caller.write_at(at_ms - self.started_ms, pcm16)

    def bot_audio(self, pcm16: bytes, sample_rate: int, at_ms: float) -> None:
        """A chunk of bot audio started playing at ``at_ms``."""
        duration_ms = len(pcm16) / 2 / sample_rate * 1000
        self.played.append(BotChunkPlayed(at_ms, duration_ms))
        if len(self.played) > self._max_played:
            del self.played[: len(self.played) // 2]
        if self.keep_audio and sample_rate == self.bot.sample_rate:
            self.bot.write_at(at_ms - self.started_ms, pcm16)

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first bot chunk started at or after ``since_ms`` began playing."""
        index = bisect.bisect_left(self.played, since_ms, key=lambda p: p.at_ms)
        return self.played[index].at_ms if index < len(self.played) else None

    def write_call_wav(self, path: Path) -> None:
        """Caller (left) and bot (right) on one time line, at the bot's rate."""
        write_call_wav(path, self.caller, self.bot)


def write_call_wav(path: Path, caller: Track, bot: Track) -> None:
    """``call.wav``: the caller's track (left) and the bot's (right), at the bot's rate."""
    import numpy as np
    import soxr

    samples = np.frombuffer(caller.pcm(), dtype="<i2").astype(np.float32) / 32768
    if caller.sample_rate != bot.sample_rate and samples.size:
        samples = soxr.resample(samples, caller.sample_rate, bot.sample_rate)
    left = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    write_wav(path, interleave(left, bot.pcm()), bot.sample_rate, channels=2)
