"""Caller audio across a brain switch: what one brain had and the other must hear.

A switch away hands the chained brain the caller's audio no realtime session
committed (:func:`caller_frames`, :func:`unfinished_turn`). A switch back
hands the realtime brain the caller's opening words the chained brain's VAD
had not yet reported (:class:`RecentCallerAudio`): the switch back waits for
a quiet turn boundary, but on a loaded machine the VAD reads the caller's
audio late, so a caller who starts to speak just before the switch had
their first words go to the chained brain alone, and the realtime brain
heard the question without them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from loguru import logger
from pipecat.audio.utils import create_file_resampler
from pipecat.frames.frames import InputAudioRawFrame

from voxpipe.audio import AudioFormat
from voxpipe.call.user_audio import unfinished_turn_start_ms
from voxpipe.processors.local.vad import WINDOW_MS, voiced_windows
from voxpipe.telephony.codec import AudioEncoding

# Speech detection on the caller audio handed to another brain: Silero at 16 kHz,
# below the chained VAD's 0.6 confidence so nothing that VAD would hear is left out.
VAD_RATE = 16_000
HAND_THRESHOLD = 0.3


class RecentCallerAudio:
    """The caller's last ``keep_ms`` of audio on its way to the chained brain.

    On a switch back, :meth:`opening` is what of it holds speech: the caller's
    first words, which the realtime brain must hear before the live audio.
    ``keep_ms`` is the turn boundary's quiet (everything in it came after the
    chained reply played out, so no reply and no earlier turn is in it).
    """

    def __init__(self, keep_ms: int) -> None:
        self.keep_ms = keep_ms
        self._frames: collections.deque[InputAudioRawFrame] = collections.deque()
        self._ms = 0

    def add(self, frame: InputAudioRawFrame) -> None:
        """Keep ``frame``; drop the oldest beyond ``keep_ms``."""
        self._frames.append(frame)
        self._ms += frame_ms(frame)
        while self._frames and self._ms - frame_ms(self._frames[0]) >= self.keep_ms:
            self._ms -= frame_ms(self._frames.popleft())

    def clear(self) -> None:
        self._frames.clear()
        self._ms = 0

    @property
    def ms(self) -> int:
        return self._ms

    async def opening(self) -> list[InputAudioRawFrame]:
        """The kept audio if any of it is speech (quiet before it and all), else none; emptied."""
        frames = list(self._frames)
        self.clear()
        return await unfinished_turn(frames)


async def caller_frames(
    chunks: Sequence[bytes], fmt: AudioFormat, sample_rate: int, frame_bytes: int
) -> list[InputAudioRawFrame]:
    """The realtime session's input audio (``fmt``) as the caller's frames again.

    Mono PCM16 at the caller's rate, in frames of the caller's size (the
    realtime service takes the caller's audio as mono too).
    """
    if not chunks:
        return []
    audio = b"".join(chunks)
    if fmt is AudioFormat.PCM16_24K:
        rate = 24_000
    else:
        audio, rate = AudioEncoding.of(fmt).decode(audio), 8_000
    if rate != sample_rate:
        audio = await create_file_resampler().resample(audio, rate, sample_rate)
    size = max(2, frame_bytes - frame_bytes % 2)
    return [
        InputAudioRawFrame(audio=audio[i : i + size], sample_rate=sample_rate, num_channels=1)
        for i in range(0, len(audio), size)
    ]


async def unfinished_turn(frames: list[InputAudioRawFrame]) -> list[InputAudioRawFrame]:
    """The caller's frames from shortly before their first speech; none without speech.

    What no session committed is mostly the quiet after the caller's last
    turn (seconds of it on a stall: everything the caller sent while the
    reply played and the brain hung). Handed to the chained brain whole, it
    went through the chained VAD frame by frame, each frame a trip to the
    VAD's thread, and being audio (pipecat's system frames) ahead of the
    re-ask queued before it: the chained LLM started 1.2-7.4 s after a stall
    switch at load 6-13 (``tests/pipelines/test_failover_faults.py``). One
    Silero pass over the whole stretch, in a thread, finds where speech
    starts (:func:`~voxpipe.call.user_audio.unfinished_turn_start_ms`). Its
    threshold sits below the chained VAD's confidence (0.6), so what that VAD
    would hear as speech is handed over; if the pass fails, everything is.
    """
    if not frames:
        return frames
    rate = frames[0].sample_rate
    audio = b"".join(f.audio for f in frames)
    try:
        if rate != VAD_RATE:
            audio = await create_file_resampler().resample(audio, rate, VAD_RATE)
        voiced = await asyncio.to_thread(voiced_windows, audio, threshold=HAND_THRESHOLD)
    except Exception as exc:  # no verdict: hand over everything, as before
        logger.warning(f"speech detection on the handed caller audio failed: {exc}")
        return frames
    start_ms = unfinished_turn_start_ms(voiced, WINDOW_MS)
    if start_ms is None:
        return []
    kept, at_ms = [], 0.0
    for frame in frames:
        at_ms += frame_ms(frame)
        if at_ms > start_ms:
            kept.append(frame)
    return kept


def frame_ms(frame: InputAudioRawFrame) -> int:
    """Milliseconds of a mono PCM16 frame."""
    return len(frame.audio) * 1000 // (2 * frame.sample_rate)


__all__ = ["RecentCallerAudio", "caller_frames", "frame_ms", "unfinished_turn"]
