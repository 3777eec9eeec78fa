"""Whisper's short encoder window: same words as the 30 s window, long audio still whole."""

from __future__ import annotations

import pytest

from voxpipe import engines as eng
from voxpipe.evaluation import word_error_rate
from voxpipe.transports.audio_file import load_audio

pytestmark = pytest.mark.models

SENTENCES = [
    "What time does the pharmacy open on Saturday?",
    "Could you book me an appointment for Monday morning?",
    "How many minutes are there in a day?",
]


async def test_short_window_hears_what_the_full_window_hears(make_speech) -> None:
    short = eng.WhisperEngine(short_window_secs=10.0)
    full = await eng.shared_stt()
    for text in SENTENCES:
        pcm = load_audio(make_speech(text, rate=16_000), 16_000).pcm16
        heard_short, heard_full = short.transcribe(pcm), full.transcribe(pcm)
        assert word_error_rate(text, heard_short) <= word_error_rate(text, heard_full) + 0.1
        assert word_error_rate(text, heard_short) < 0.15, heard_short


async def test_audio_longer_than_the_window_is_transcribed_whole(make_speech) -> None:
    stt = eng.WhisperEngine(short_window_secs=10.0)
    clips = [load_audio(make_speech(t, rate=16_000), 16_000).pcm16 for t in SENTENCES * 2]
    pcm = b"".join(clips)
    assert len(pcm) / 32_000 > 10  # beyond the 10 s window
    heard = stt.transcribe(pcm)
    assert word_error_rate(" ".join(SENTENCES * 2), heard) < 0.15, heard


async def test_short_window_stays_silent_on_silence_and_noise() -> None:
    import numpy as np

    stt = eng.WhisperEngine(short_window_secs=10.0)
    assert stt.transcribe(bytes(32_000)) == ""
    noise = np.random.default_rng(1).normal(0, 300, 16_000).astype("<i2").tobytes()
    assert len(stt.transcribe(noise).split()) <= 2


def test_a_looped_short_window_transcript_is_recognised() -> None:
    assert eng.stt._looped("Sorry, I can't share that. Sorry, I can't share that.")
    assert not eng.stt._looped("Yes. Yes, it is ready.")
