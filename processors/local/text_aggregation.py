"""Clause-level text aggregation for TTS: the first audio comes from the first clause.

pipecat's sentence aggregator holds a reply's text until the first sentence
ends. On a 2-core CPU a 0.5B model writes about 30 tokens a second, so a
twelve-word first sentence costs ~0.4 s of generation before synthesis can
start. :class:`ClauseTextAggregator` also releases text at a clause boundary
(``,`` ``;`` ``:`` followed by whitespace) once the clause holds at least
``min_words`` words, by default only for the first piece of a response so the
rest is still spoken sentence by sentence (better prosody, same throughput).

It only ever emits text it was given, at boundaries inside that text, so the
guarantee of the guardrail tap upstream (only checked words reach the TTS)
holds unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

CLAUSE_PUNCTUATION = frozenset(",;:")


class ClauseTextAggregator(SimpleTextAggregator):
    """Sentence aggregation that also splits at a clause once it has ``min_words`` words.

    Args:
        min_words: words a clause needs before a comma, semicolon or colon ends it.
        every_clause: split at every long-enough clause, not only the first
            piece of each response.
        first_words: also end a response's first piece after this many words
            with no punctuation at all (the first audio then waits for a few
            words, not for the first sentence; costs a seam in the intonation).
    """

    def __init__(
        self,
        *,
        min_words: int = 4,
        every_clause: bool = False,
        first_words: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._min_words = min_words
        self._every_clause = every_clause
        self._first_words = first_words
        self._emitted = False

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        if self._aggregation_type == TextType.TOKEN:
            async for aggregation in super().aggregate(text):
                yield aggregation
            return
        for char in text:
            self._text += char
            result = await self._check_sentence_with_lookahead(char)
            if result is None:
                result = await self._check_clause(char)
            if result is not None:
                self._emitted = True
                yield result

    async def _check_clause(self, char: str) -> Aggregation | None:
        if self._emitted and not self._every_clause:
            return None
        # The whitespace after the mark is the lookahead: "1,000" never splits.
        if not char.isspace() or len(self._text) < 2:
            return None
        clause = self._text.strip()
        words = len(clause.split())
        at_mark = self._text[-2] in CLAUSE_PUNCTUATION and words >= self._min_words
        cut_short = (
            not self._emitted
            and self._first_words is not None
            and words >= self._first_words
            and not self._text[-2].isspace()
        )
        if not (at_mark or cut_short):
            return None
        await super().reset()  # the buffer and any pending sentence lookahead
        return Aggregation(text=clause, type=TextType.SENTENCE)

    async def flush(self) -> Aggregation | None:
        self._emitted = False
        return await super().flush()

    async def handle_interruption(self) -> None:
        self._emitted = False
        await super().handle_interruption()

    async def reset(self) -> None:
        self._emitted = False
        await super().reset()
