"""A slow local voice loses no answer to pipecat's audio-context deadline.

pipecat's TTS playback gives up on a context after ``stop_frame_timeout_s``
(3 s) without audio: it pushes ``TTSStoppedFrame``, reports "completed with no
audio" and *removes the context with whatever is queued in it*. Piper and
eSpeak yield a piece's audio only once the piece is synthesised, so a loaded
machine reaches that deadline routinely; when the audio lands in the same
loop iterations as the deadline (a stalled loop makes that likely), the
whole one-sentence answer was dropped without a word (1 of 10 failover
switches in benchmarks/failover.py got no chained audio in 120 s). The local
service synthesises inline, so the turn's end closes its context and the idle
deadline is only a safety net.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from voxpipe.processors.local.tts import LocalTTSService

ANSWER = "The capital of Japan is Tokyo."


class SlowVoice:
    """A voice whose one chunk comes ``delay_s`` after it is asked (in its thread)."""

    sample_rate = 16_000

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def synthesize(self, text: str) -> Iterator[bytes]:
        if text.strip(" .") == "":
            return  # nothing to say
        time.sleep(self.delay_s)
        yield b"\x01\x00" * 1600


async def _speak(
    voice: SlowVoice, text: str = ANSWER, stall_at_s: float | None = None, wait_s: float = 4.5
) -> tuple[list[Frame], list[Frame]]:
    # Whole sentences (no first-piece cut), one piece of audio each; else the defaults.
    tts = LocalTTSService(engine=voice, first_clause_words=None, first_words=None)

    @tts.event_handler("on_tts_request")
    async def _stall(_tts: LocalTTSService, _context_id: str, _text: str) -> None:
        if stall_at_s is not None:  # the loop stalls across both the audio and the deadline
            asyncio.get_running_loop().call_later(stall_at_s, time.sleep, 0.6)

    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame(text),
        LLMFullResponseEndFrame(),
        SleepFrame(wait_s),
    ]
    down, up = await run_test(tts, frames_to_send=frames)
    return down, up


def _count(kind: type, frames: list[Frame]) -> int:
    return sum(isinstance(f, kind) for f in frames)


async def test_audio_landing_with_the_deadline_is_spoken_not_dropped() -> None:
    # The chunk is ready at 2.9 s; the loop stalls 2.8-3.4 s, across pipecat's 3 s deadline.
    down, up = await _speak(SlowVoice(2.9), stall_at_s=2.8)
    assert _count(TTSAudioRawFrame, down) == 1, [type(f).__name__ for f in down]
    assert _count(TTSTextFrame, down) == 1
    assert not [f for f in up if isinstance(f, ErrorFrame)], up


async def test_a_voice_slower_than_the_deadline_stops_once_after_its_audio() -> None:
    down, up = await _speak(SlowVoice(3.5))
    names = [type(f).__name__ for f in down]
    assert _count(TTSAudioRawFrame, down) == 1, names
    assert _count(TTSStoppedFrame, down) == 1, names  # no early stop before the audio
    assert names.index("TTSAudioRawFrame") < names.index("TTSStoppedFrame"), names
    assert not [f for f in up if isinstance(f, ErrorFrame)], up  # no "completed with no audio"


async def test_text_the_voice_says_nothing_for_closes_at_the_turns_end() -> None:
    began = time.monotonic()
    down, _up = await _speak(SlowVoice(0.1), text="...", wait_s=1.0)
    assert _count(TTSAudioRawFrame, down) == 0
    assert _count(TTSStoppedFrame, down) == 1, [type(f).__name__ for f in down]
    # Not held for the idle deadline (60 s): the turn's end closed the empty context.
    assert time.monotonic() - began < 30
