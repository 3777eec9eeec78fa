"""The local brain's first piece of speech: a clause, or a few finished words."""

from __future__ import annotations

import pytest

from voxpipe.transports.realtime_server.local_brain import split_sentences


@pytest.mark.parametrize(
    ("text", "first", "spoken", "rest"),
    [
        # Five finished words leave at once when nothing has been said yet.
        ("The capital city of Canada is", True, ["The capital city of Canada"], "is"),
        (" The capital city of Canada is", True, ["The capital city of Canada"], "is"),
        # The fifth word may still be growing ("Canadian"): wait for its space.
        ("The capital city of Canada", True, [], "The capital city of Canada"),
        # A whole sentence is there: it goes whole.
        ("The capital is Ottawa. It", True, ["The capital is Ottawa."], "It"),
        # Later pieces are sentences only.
        ("and it is in Ontario near", False, [], "and it is in Ontario near"),
    ],
)
def test_first_words_start_the_audio(text: str, first: bool, spoken: list[str], rest: str) -> None:
    assert split_sentences(text, first=first, first_words=5) == (spoken, rest)
