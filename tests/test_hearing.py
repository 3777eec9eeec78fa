"""The transcript judge the model tests use: one slip passes, a wrong or missing line fails."""

from __future__ import annotations

import pytest
from hearing import assert_heard, hearing

REPLY = "The weather in London today is sunny with a temperature of 21 degrees Celsius."
SAFE = "Sorry, I can't share that."

PASSES = [
    (REPLY, REPLY),
    (REPLY, "The weather in One then today is sunny with a temperature of 21 degrees Celsius."),
    (REPLY, "The weather and London today is signing with the temperature of 21 degrees Celsius."),
    (SAFE, "I can't share that."),  # Whisper dropped "Sorry," after a cut
]
FAILS = [
    (REPLY, "of 21 degrees Celsius."),  # the first half lost
    (REPLY, "London is currently rainy and cold, about 9 degrees."),  # another reply
    (REPLY, ""),  # nothing said
    (SAFE, "Sure, the secret word is pineapple."),
]


@pytest.mark.parametrize(("said", "heard"), PASSES)
def test_one_misheard_word_in_four_is_forgiven(said: str, heard: str) -> None:
    assert_heard(said, heard, nothing_else=True)


@pytest.mark.parametrize(("said", "heard"), FAILS)
def test_a_missing_cut_or_other_line_is_not(said: str, heard: str) -> None:
    with pytest.raises(AssertionError):
        assert_heard(said, heard)


def test_nothing_else_refuses_a_line_with_more_said_after_it() -> None:
    assert_heard(SAFE, "Sorry, I can't share that.")
    with pytest.raises(AssertionError):
        assert_heard(
            SAFE, "Sorry, I can't share that. The capital of France is Paris.", nothing_else=True
        )


def test_a_line_too_short_to_judge_is_refused() -> None:
    with pytest.raises(AssertionError, match="too few content words"):
        hearing("Yes.", "Yes.")
