"""Clause-level TTS: the first audio of a reply comes from its first clause."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSTextFrame,
)
from pipecat.tests.utils import run_test

from voxpipe.processors.local.text_aggregation import ClauseTextAggregator
from voxpipe.processors.local.tts import LocalTTSService
from voxpipe.speech_text import SpeechTextSplitter


async def pieces(aggregator: ClauseTextAggregator, tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        out += [a.text async for a in aggregator.aggregate(token)]
    if (rest := await aggregator.flush()) is not None and rest.text:
        out.append(rest.text)
    return out


async def test_the_graph_cuts_pieces_with_the_one_rule() -> None:
    """The same pieces as the local brain and batch: see tests/core/test_speech_text.py."""
    tokens = ["Sure", ",", " the pharmacy", " opens at nine", ",", " and closes at six.", " Bye."]
    aggregator = ClauseTextAggregator()
    splitter = SpeechTextSplitter()
    expected = [p for t in tokens for p in splitter.feed(t)] + [splitter.finish()]
    assert (
        await pieces(aggregator, tokens)
        == expected
        == [
            "Sure, the pharmacy opens at nine,",
            "and closes at six.",
            "Bye.",
        ]
    )
    # Each response gets its own early first piece.
    assert await pieces(aggregator, tokens) == expected


async def test_interruption_drops_the_unspoken_text() -> None:
    aggregator = ClauseTextAggregator()
    assert await pieces(aggregator, ["I will check that for"]) == ["I will check that for"]
    _ = [a async for a in aggregator.aggregate("I will check")]
    await aggregator.handle_interruption()
    assert await aggregator.flush() is None


class RecordingVoice:
    """A voice that records what it was asked to say and returns a little audio."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self.said: list[str] = []

    def synthesize(self, text: str) -> Iterator[bytes]:
        self.said.append(text)
        yield bytes(320)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        # The default: the first piece ends after 3 words, or at a clause of 4 before them.
        ({}, ["Sure, the pharmacy", "opens at nine, and closes at six."]),
        ({"first_words": None}, ["Sure, the pharmacy opens at nine,", "and closes at six."]),
        (
            {"first_clause_words": None, "first_words": None},
            ["Sure, the pharmacy opens at nine, and closes at six."],
        ),
        (
            {"first_clause_words": None, "first_words": 3},
            ["Sure, the pharmacy", "opens at nine, and closes at six."],
        ),
    ],
)
async def test_local_tts_speaks_the_first_piece_on_its_own(
    options: dict[str, Any], said: list[str]
) -> None:
    voice = RecordingVoice()
    tts = LocalTTSService(engine=voice, **options)
    text = ["Sure", ",", " the pharmacy", " opens at nine", ",", " and closes at six", "."]
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in text),
        LLMFullResponseEndFrame(),
    ]
    down, _ = await run_test(tts, frames_to_send=frames)
    assert voice.said == said
    spoken = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert spoken.split() == "".join(text).split()
