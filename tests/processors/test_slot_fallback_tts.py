"""The TTS slot with fallback: a voice that misses its first-audio deadline, sentence by sentence.

Piper is given a deadline it cannot meet (1 ms for a sentence's first audio;
it takes 50 ms or more to synthesise one), eSpeak NG stands behind it. Each
sentence missed is spoken by eSpeak; the next sentence tries Piper again until
it has missed two in a row, then Piper is benched and eSpeak speaks at once.
"""

from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.tests.utils import run_test

from voxpipe.engines import TTSEngineKind, shared_tts
from voxpipe.frames import SlotFallbackFrame
from voxpipe.processors.slot_fallback import FallbackTTSService
from voxpipe.processors.slot_members import voice
from voxpipe.slot_config import EngineKind, EngineSpec
from voxpipe.slot_fallback import FallbackPolicy, HandedOff, HandoffReason, Slot, SlotFallback

pytestmark = pytest.mark.models

SENTENCES = ["The shop opens at nine.", "It closes at six.", "We are closed on Sunday."]


async def test_a_voice_that_misses_its_deadline_is_replaced_for_that_sentence() -> None:
    voices = [
        voice(EngineSpec(EngineKind.PIPER, "piper")),
        voice(EngineSpec(EngineKind.ESPEAK, "espeak")),
    ]
    fallback = SlotFallback(
        Slot.TTS, ["piper", "espeak"], FallbackPolicy(deadline_ms=30_000), {"piper": 1}
    )
    tts = FallbackTTSService(voices, fallback, first_clause_words=None)
    await tts.preload()  # both voices loaded: the misses are Piper's synthesis, not its load
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(s if i == 0 else " " + s) for i, s in enumerate(SENTENCES)),
        LLMFullResponseEndFrame(),
    ]
    down, up = await run_test(tts, frames_to_send=frames, start_timeout=30)

    # Sentences one and two: Piper missed, eSpeak spoke. Sentence three: Piper was benched
    # (two misses in a row), so eSpeak spoke it straight away and nothing was handed on.
    events = [f.event for f in down if isinstance(f, SlotFallbackFrame)]
    assert len(events) == 2
    for event in events:
        assert isinstance(event, HandedOff)
        assert (event.from_engine, event.to_engine) == ("piper", "espeak")
        assert event.reason is HandoffReason.DEADLINE and not event.after_partial
    assert fallback.benched(now_ms=events[-1].at_ms) == ["piper"]
    assert not [f for f in [*down, *up] if isinstance(f, ErrorFrame)]

    # The caller got every sentence, whole, in eSpeak's voice: as much audio as eSpeak
    # makes of the three sentences on its own.
    espeak = await shared_tts(TTSEngineKind.ESPEAK)
    alone = await asyncio.to_thread(
        lambda: [len(b"".join(espeak.synthesize(s))) / 2 / espeak.sample_rate for s in SENTENCES]
    )
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    spoken = sum(len(f.audio) / 2 / f.sample_rate for f in audio)
    assert spoken == pytest.approx(sum(alone), rel=0.05), (spoken, alone)
