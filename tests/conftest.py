"""Shared fixtures: real speech made by the local TTS, cached per test session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf
import soxr

if TYPE_CHECKING:
    from voxpipe.engines import LocalEngines

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The realtime call's state machine runs strict here: an illegal transition ends the call.
os.environ.setdefault("VOXPIPE_STRICT_STATES", "1")

SpeechMaker = Callable[..., Path]


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def make_speech(speech_dir: Path) -> SpeechMaker:
    """``make_speech(text, rate=16000, channels=1, lead_ms=300, tail_ms=300, fmt="WAV")``.

    Speaks ``text`` with the local voice (Piper when installed, else eSpeak NG),
    deterministic, so every run of a test hears the same audio; resampled and
    laid out as asked, with silence around it. Cached by arguments.
    """
    from voxpipe.engines import make_tts

    voice = make_tts(deterministic=True)
    cache: dict[tuple[object, ...], Path] = {}

    def make(
        text: str,
        *,
        rate: int = 16_000,
        channels: int = 1,
        lead_ms: int = 300,
        tail_ms: int = 300,
        fmt: str = "WAV",
        gain: float = 1.0,
    ) -> Path:
        key = (text, rate, channels, lead_ms, tail_ms, fmt, gain)
        if key in cache:
            return cache[key]
        pcm = b"".join(voice.synthesize(text))
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        audio = soxr.resample(audio, voice.sample_rate, rate) * gain
        audio = np.concatenate(
            [np.zeros(rate * lead_ms // 1000), audio, np.zeros(rate * tail_ms // 1000)]
        )
        data = np.repeat(audio[:, None], channels, axis=1)
        path = speech_dir / f"speech-{len(cache)}.{fmt.lower()}"
        sf.write(str(path), np.clip(data, -1, 1), rate, format=fmt, subtype="PCM_16")
        cache[key] = path
        return path

    return make


@pytest.fixture
async def loaded_engines() -> LocalEngines:
    """The local models, loaded before a paced call starts, as a serving agent has them.

    Left to the call's services, they load while the recording already plays:
    the STT then takes the backlog at once while the VAD behind it works
    through it, so under load the VAD's start reached the STT 1.4-3.7 s after
    the speech began (0.4 s with the models loaded, even at load 9), past
    pipecat's 1 s pre-roll, and Whisper heard "weather like in London today."
    for "What is the weather like in London today?".
    """
    from voxpipe.engines import shared_engines

    return await shared_engines(tts="piper")
