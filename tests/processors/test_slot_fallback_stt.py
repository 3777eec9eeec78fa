"""The STT slot with fallback: a segment handed on when its first engine is late or broken.

Real Whisper on real speech. The first engine is given a deadline it cannot
meet (1 ms for a whole transcript) or a model directory that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pipecat.frames.frames import (
    ErrorFrame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import run_test

from voxpipe.evaluation import word_error_rate
from voxpipe.frames import SlotFallbackFrame
from voxpipe.processors.slot_fallback import FallbackSTTService
from voxpipe.processors.slot_members import transcriber
from voxpipe.slot_config import EngineKind, EngineSpec
from voxpipe.slot_fallback import (
    FallbackPolicy,
    GaveUp,
    HandedOff,
    HandoffReason,
    Slot,
    SlotFallback,
)

pytestmark = pytest.mark.models

QUESTION = "What time do you open on Saturday?"


def segment(path: Path) -> list[Any]:
    """The caller's segment as the VAD hands it to STT: started, 20 ms frames, stopped."""
    audio, rate = sf.read(str(path), dtype="int16")
    pcm = np.asarray(audio).tobytes()
    step = rate // 50 * 2
    chunks = [
        InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate, num_channels=1)
        for i in range(0, len(pcm), step)
    ]
    return [VADUserStartedSpeakingFrame(), *chunks, VADUserStoppedSpeakingFrame()]


def stt_service(engines: list[EngineSpec], deadlines: dict[str, int]) -> FallbackSTTService:
    fallback = SlotFallback(
        Slot.STT, [e.name for e in engines], FallbackPolicy(deadline_ms=60_000), deadlines
    )
    return FallbackSTTService([transcriber(e) for e in engines], fallback)


async def test_a_late_transcript_is_handed_to_the_next_engine(make_speech: Any) -> None:
    hurried = EngineSpec(EngineKind.WHISPER, "whisper-hurried")
    stt = stt_service([hurried, EngineSpec(EngineKind.WHISPER, "whisper")], {"whisper-hurried": 1})
    await stt.preload()
    down, up = await run_test(stt, frames_to_send=segment(make_speech(QUESTION)), start_timeout=30)

    (event,) = [f.event for f in down if isinstance(f, SlotFallbackFrame)]
    assert isinstance(event, HandedOff)
    assert (event.from_engine, event.to_engine) == ("whisper-hurried", "whisper")
    assert event.reason is HandoffReason.DEADLINE and event.detail == "nothing within 1 ms"
    (heard,) = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert word_error_rate(QUESTION, heard) <= 1 / 7, heard
    assert not [f for f in [*down, *up] if isinstance(f, ErrorFrame)]


async def test_a_segment_no_engine_can_hear_is_an_error_naming_each(
    make_speech: Any, tmp_path: Path
) -> None:
    engines = [
        EngineSpec(EngineKind.WHISPER, f"whisper-{i}", str(tmp_path / f"gone-{i}")) for i in (1, 2)
    ]
    stt = stt_service(engines, {})
    down, up = await run_test(stt, frames_to_send=segment(make_speech(QUESTION)), start_timeout=30)

    assert not [f for f in down if isinstance(f, TranscriptionFrame)]
    handoff, gave_up = [f.event for f in down if isinstance(f, SlotFallbackFrame)]
    assert isinstance(handoff, HandedOff) and isinstance(gave_up, GaveUp)
    (error,) = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    message = str(error.error)
    assert (
        "every stt engine failed on this request: whisper-1 (error: no Whisper model at" in message
    )
    assert str(tmp_path / "gone-2") in message
    assert stt.is_usable  # the next segment is tried again
