"""A brain switch's re-asked answer: its first piece of speech is a few words, once.

The caller waits in silence for the re-ask after a switch; with the usual
rule its first piece was the whole first sentence ("The capital of Italy is
Rome."), synthesised only once its last word existed. ``first_piece_words``
cuts the next response's first piece after a few words, for that response
only, and the piece synthesised ahead is cut the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSTextFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from voxpipe.processors.local.tts import LocalTTSService


class Voice:
    """A voice that says each piece at once, and remembers what it was asked."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self.asked: list[str] = []

    def synthesize(self, text: str) -> Iterator[bytes]:
        self.asked.append(text)
        yield b"\x01\x00" * 800


def response(*tokens: str) -> list[Frame]:
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in tokens),
        LLMFullResponseEndFrame(),
    ]


TOKENS = ("The", " capital", " of", " Italy", " is", " Rome", ".")


async def test_the_next_response_only_starts_with_a_short_piece() -> None:
    voice = Voice()
    tts = LocalTTSService(engine=voice, first_words=None)  # its own rule: first clauses
    tts.first_piece_words(3)
    assert tts.piece_splitter().feed("The capital of Italy") == ["The capital of"]
    down, _ = await run_test(
        tts, frames_to_send=[*response(*TOKENS), *response(*TOKENS), SleepFrame(0.5)]
    )
    assert voice.asked == [
        "The capital of",
        "Italy is Rome.",
        "The capital of Italy is Rome.",  # the next response: the usual rule again
    ]
    spoken = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(spoken).split() == 2 * ["The", "capital", "of", "Italy", "is", "Rome."]
    assert tts.piece_splitter().feed("The capital of Italy") == []


async def test_a_shortening_taken_back_leaves_the_usual_rule() -> None:
    voice = Voice()
    tts = LocalTTSService(engine=voice, first_words=None)  # its own rule: first clauses
    tts.first_piece_words(3)
    tts.first_piece_words(None)  # the suspected hang passed: no re-ask is coming
    await run_test(tts, frames_to_send=[*response(*TOKENS), SleepFrame(0.5)])
    assert voice.asked == ["The capital of Italy is Rome."]
