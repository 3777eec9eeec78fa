"""The caller audio a switch hands to the chained brain: the turn under way, not the quiet.

Real speech (the deterministic local voice) and pipecat's bundled Silero model.
Before, a stall switch handed the chained brain everything no session had
committed, 5-15 s of quiet in the failover tests, and the re-ask queued behind
it reached the chained LLM 1.2-7.4 s after the switch at load 6-13.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soundfile as sf
from pipecat.frames.frames import InputAudioRawFrame

from voxpipe.audio import AudioFormat
from voxpipe.call.user_audio import HAND_PRE_ROLL_MS
from voxpipe.processors.failover_audio import RecentCallerAudio, caller_frames, unfinished_turn

RATE = 16_000


def frames_of(pcm: bytes, frame_bytes: int = 640) -> list[InputAudioRawFrame]:
    return [
        InputAudioRawFrame(audio=pcm[i : i + frame_bytes], sample_rate=RATE, num_channels=1)
        for i in range(0, len(pcm), frame_bytes)
    ]


def ms_of(frames: list[InputAudioRawFrame]) -> float:
    return sum(len(f.audio) for f in frames) / (2 * RATE) * 1000


async def test_nothing_but_quiet_hands_over_nothing() -> None:
    quiet = frames_of(bytes(2 * RATE * 9))  # 9 s: what a stall leaves in the relay
    assert await unfinished_turn(quiet) == []
    assert await unfinished_turn([]) == []


async def test_a_question_under_way_is_handed_over_from_just_before_it(make_speech: Any) -> None:
    lead_ms = 6_000
    path = make_speech("What is the capital of Italy?", lead_ms=lead_ms, tail_ms=300)
    pcm = sf.read(str(path), dtype="int16")[0].tobytes()
    frames = frames_of(pcm)
    handed = await unfinished_turn(frames)
    assert handed == frames[len(frames) - len(handed) :]  # a tail, in order, nothing changed
    dropped_ms = ms_of(frames) - ms_of(handed)
    # The quiet before the question goes, the question and a pre-roll before it stay.
    assert lead_ms - HAND_PRE_ROLL_MS - 200 <= dropped_ms <= lead_ms - HAND_PRE_ROLL_MS + 100


async def test_the_relay_audio_of_a_realtime_session_is_read_at_the_callers_rate(
    make_speech: Any,
) -> None:
    # The relay holds 24 kHz PCM16; the caller's frames are 16 kHz, as the chained VAD reads.
    path = make_speech("Hello there.", rate=24_000, lead_ms=6_000, tail_ms=200)
    pcm24 = sf.read(str(path), dtype="int16")[0]
    chunks = [pcm24[i : i + 480].tobytes() for i in range(0, pcm24.size, 480)]
    frames = await caller_frames(chunks, AudioFormat.PCM16_24K, RATE, 640)
    handed = await unfinished_turn(frames)
    assert 0 < ms_of(handed) < ms_of(frames) - 2_000
    assert np.frombuffer(b"".join(f.audio for f in handed), dtype="<i2").any()


async def test_a_switch_back_hands_on_the_last_quiet_only_when_the_caller_began_in_it(
    make_speech: Any,
) -> None:
    recent = RecentCallerAudio(keep_ms=1_500)
    for frame in frames_of(bytes(2 * RATE * 5)):  # 5 s of quiet before the switch back
        recent.add(frame)
    assert recent.ms == 1_500  # only the boundary's last quiet is kept
    assert await recent.opening() == []  # nobody spoke: nothing to hand on
    assert recent.ms == 0
    # The caller began "What is the capital..." 600 ms before the switch back.
    path = make_speech("What is the capital of Italy?", lead_ms=0, tail_ms=0)
    speech = frames_of(sf.read(str(path), dtype="int16")[0].tobytes())
    began = [*frames_of(bytes(2 * RATE * 3)), *speech[: 600 * RATE // 1000 * 2 // 640]]
    for frame in began:
        recent.add(frame)
    opening = await recent.opening()
    assert opening == began[len(began) - len(opening) :]  # the latest audio, in order
    assert ms_of(opening) == 1_500  # the kept quiet and the caller's first 600 ms
    assert np.frombuffer(b"".join(f.audio for f in opening[-10:]), dtype="<i2").any()
