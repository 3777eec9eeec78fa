"""Clause-level TTS: the first audio of a reply comes from its first clause."""

from __future__ import annotations

from collections.abc import Iterator

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


async def pieces(aggregator: ClauseTextAggregator, tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        out += [a.text async for a in aggregator.aggregate(token)]
    if (rest := await aggregator.flush()) is not None and rest.text:
        out.append(rest.text)
    return out


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        # A long first clause leaves at its comma; the rest goes sentence by sentence.
        (
            [
                "Sure",
                ",",
                " the pharmacy",
                " opens at nine",
                ",",
                " and closes at six.",
                " Bye",
                ".",
            ],
            ["Sure, the pharmacy opens at nine,", "and closes at six.", "Bye."],
        ),
        # A short opener ("Yes,") waits for more words.
        (["Yes", ",", " it is", " open today."], ["Yes, it is open today."]),
        # A comma inside a number is no clause boundary.
        (
            ["It costs", " about 1", ",", "000 euros in total."],
            ["It costs about 1,000 euros in total."],
        ),
        # A colon ends a clause too.
        (["Here is what you need", ":", " a card."], ["Here is what you need:", "a card."]),
    ],
)
async def test_first_clause_leaves_early(tokens: list[str], expected: list[str]) -> None:
    assert await pieces(ClauseTextAggregator(), tokens) == expected


async def test_each_response_gets_its_own_early_clause() -> None:
    aggregator = ClauseTextAggregator()
    tokens = ["Well, I think that", ", in short", ", yes."]
    first = await pieces(aggregator, tokens)
    second = await pieces(aggregator, tokens)
    assert first == second == ["Well, I think that,", "in short, yes."]


async def test_every_clause_mode_splits_each_long_clause() -> None:
    aggregator = ClauseTextAggregator(every_clause=True, min_words=2)
    tokens = ["Open today", ", closed tomorrow", ", back Monday."]
    assert await pieces(aggregator, tokens) == ["Open today,", "closed tomorrow,", "back Monday."]


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
    ("words", "expected_first"), [(4, "Sure, the pharmacy opens at nine,"), (None, None)]
)
async def test_local_tts_speaks_the_first_clause_on_its_own(
    words: int | None, expected_first: str | None
) -> None:
    voice = RecordingVoice()
    tts = LocalTTSService(engine=voice, first_clause_words=words)
    text = ["Sure", ",", " the pharmacy", " opens at nine", ",", " and closes at six", "."]
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in text),
        LLMFullResponseEndFrame(),
    ]
    down, _ = await run_test(tts, frames_to_send=frames)
    whole = "Sure, the pharmacy opens at nine, and closes at six."
    if expected_first is None:
        assert voice.said == [whole]
    else:
        assert voice.said == [expected_first, "and closes at six."]
    spoken = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert spoken.split() == whole.split()


async def test_first_words_cut_the_first_piece_without_punctuation() -> None:
    aggregator = ClauseTextAggregator(first_words=5)
    tokens = ["The capital", " city of", " Canada is", " Ottawa. It", " is", " in Ontario."]
    assert await pieces(aggregator, tokens) == [
        "The capital city of Canada",
        "is Ottawa.",
        "It is in Ontario.",
    ]
    # Only the first piece of each response is cut short.
    assert (await pieces(aggregator, ["Yes it is", " open on Sunday too."]))[
        0
    ] == "Yes it is open on"
