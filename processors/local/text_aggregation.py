"""The chained graph's TTS text aggregation: voxpipe's one speech text rule, as pipecat's seam.

pipecat's sentence aggregator holds a reply's text until the first sentence
ends. :class:`ClauseTextAggregator` cuts it with
:class:`voxpipe.speech_text.SpeechTextSplitter` instead, the rule the local
brain and ``voxpipe batch`` use too: a reply's first piece may end at a clause
of a few words (or after ``first_words`` words), the rest goes sentence by
sentence (better prosody, same throughput).

It only ever emits text it was given, at boundaries inside that text, so the
guarantee of the guardrail tap upstream (only checked words reach the TTS)
holds unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pipecat.utils.text.base_text_aggregator import Aggregation, BaseTextAggregator, TextType

from voxpipe.speech_text import PieceRule, SpeechTextSplitter


class ClauseTextAggregator(BaseTextAggregator):
    """Aggregates LLM text into pieces of speech by ``rule`` (see :mod:`voxpipe.speech_text`).

    A response ends at :meth:`flush`; an interruption drops its unspoken text.
    In token mode text passes through unchanged.
    """

    def __init__(self, rule: PieceRule | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._splitter = SpeechTextSplitter(rule, language=self.language)

    @property
    def rule(self) -> PieceRule:
        """How pieces are cut; a new rule applies from the next piece cut on."""
        return self._splitter.rule

    @rule.setter
    def rule(self, rule: PieceRule) -> None:
        self._splitter.rule = rule

    @property
    def text(self) -> Aggregation:
        return Aggregation(text=self._splitter.pending.strip(), type=TextType.SENTENCE)

    def set_language(self, language: str | None) -> None:
        super().set_language(language)
        self._splitter.language = self.language

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        if self._aggregation_type == TextType.TOKEN:
            if text:
                yield Aggregation(text=text, type=TextType.TOKEN)
            return
        for piece in self._splitter.feed(text):
            yield Aggregation(text=piece, type=TextType.SENTENCE)

    async def flush(self) -> Aggregation | None:
        if self._aggregation_type == TextType.TOKEN:
            return None
        rest = self._splitter.finish()
        return None if rest is None else Aggregation(text=rest, type=TextType.SENTENCE)

    async def handle_interruption(self) -> None:
        self._splitter.clear()

    async def reset(self) -> None:
        self._splitter.clear()
