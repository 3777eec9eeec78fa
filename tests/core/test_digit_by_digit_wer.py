"""Word error rate read digit by digit: how Whisper groups the digits it heard is not scored."""

from __future__ import annotations

import pytest

from voxpipe.evaluation import word_error_rate


@pytest.mark.parametrize(
    ("said", "heard"),
    [
        ("My account number is 4 7 2 9 1 6.", "My account number is 4.72916."),
        ("My account number is 4 7 2 9 1 6.", "My account number is 472-916"),
        ("It leaves at 7:45 in the morning.", "It leaves at 745 in the morning."),
        ("The total came to 129 dollars and 50 cents.", "The total came to $129.50."),
        ("A table for 8 pm.", "A table for 8 p.m."),
        (
            "We are on the fifth floor of 300 Market Street.",
            "We are on the 5th floor of 300 Market Street.",
        ),
        ("It went to 1600 Pennsylvania Avenue.", "It went to 1,600 Pennsylvania Avenue."),
        ("The leak is in apartment 12 B.", "The leak is in apartment 12b."),
        ("An appointment with Doctor Patel.", "An appointment with Dr. Patel."),
        ("Call me back at 555 0192.", "Call me back at 555-0192."),
    ],
)
def test_the_same_digits_written_another_way_are_no_error(said: str, heard: str) -> None:
    assert word_error_rate(said, heard, digits=True) == 0.0


@pytest.mark.parametrize(
    ("said", "heard", "wer"),
    [
        ("My account number is 4 7 2 9 1 6.", "My account number is 4 7 2 9 1.", 1 / 10),
        ("It leaves at 7:45.", "It leaves at 7:55.", 1 / 6),
        ("Call me back at 555 0192.", "Call me Mac at 555 0192.", 1 / 11),
    ],
)
def test_a_wrong_or_missing_digit_or_word_still_counts(said: str, heard: str, wer: float) -> None:
    assert word_error_rate(said, heard, digits=True) == pytest.approx(wer)


def test_without_digits_numbers_are_read_whole_as_before() -> None:
    # "472916" is four hundred seventy-two thousand..., not six digits.
    assert word_error_rate("number 4 7 2 9 1 6", "number 472916") > 0.5
