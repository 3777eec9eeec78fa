"""Where a streamed reply's text is cut into pieces of speech.

Every chained reply cuts its text with this one rule: the pipecat graph's TTS
(:class:`voxpipe.processors.local.text_aggregation.ClauseTextAggregator`), the
embedded Realtime server's local brain and ``voxpipe batch`` (both through
:mod:`voxpipe.engines.reply`). A latency change measured in one mode therefore
holds in all of them.

A piece ends:

- at the end of a sentence: ``.`` ``!`` ``?`` (and the other marks pipecat
  knows) followed by whitespace and the start of the next word, confirmed by
  pipecat's sentence tokenizer, so "Dr. Smith", "e.g. this" and "3 p.m. today"
  do not split, and "$29.99" never does (no whitespace after the point);
- for a reply's first piece only, also at a clause mark (``,`` ``;`` ``:``)
  followed by whitespace once the piece holds ``clause_words`` words. On a
  2-core CPU the 0.5B model writes about 30 tokens a second, so a twelve-word
  first sentence costs ~0.4 s of generation before synthesis could start;
- for a reply's first piece, with ``first_words``, after that many finished
  words even with no punctuation (a seam in the intonation for earlier audio).

Only finished words count: a word still being written ("Canad" of "Canadian")
is never cut. The pieces do not depend on how the text was chunked: a reply
fed token by token or whole is cut the same way. Pure and time-free: text in,
pieces out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.utils.string import SENTENCE_ENDING_PUNCTUATION, match_endofsentence

CLAUSE_MARKS = frozenset(",;:")
_CLOSERS = "\"')]}”’»"


@dataclass(frozen=True)
class PieceRule:
    """How early a reply's first piece may end; later pieces are whole sentences.

    Args:
        clause_words: words a first clause needs before its ``,`` ``;`` or ``:``
            ends the piece ("Yes, it is open" stays whole); ``None``: sentences only.
        first_words: also end the first piece after this many finished words.
    """

    clause_words: int | None = 4
    first_words: int | None = None

    def __post_init__(self) -> None:
        for name in ("clause_words", "first_words"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, not {value}")


SENTENCES_ONLY = PieceRule(clause_words=None)
# A live reply's first piece ends after this many words at the latest (the chained graph's
# TTS): the 0.5B model's first clause is most often its whole first sentence, and waiting
# for it cost 355 ms of the first audio on 2 cores.
LIVE_FIRST_WORDS = 3


def piece_end(text: str, rule: PieceRule, *, first: bool, language: str = "en") -> int:
    """Where the piece at the start of ``text`` ends, or 0 while that is not decided yet.

    ``first``: nothing of this reply has been cut yet, so the first-piece rules apply.
    """
    words = 0
    start = 0
    while (word_end := _next_word_end(text, start)) is not None:
        words += 1
        word = text[start:word_end].strip().rstrip(_CLOSERS)
        if first and _ends_first_piece(word, words, rule):
            return word_end
        if word[-1:] in SENTENCE_ENDING_PUNCTUATION:
            end = _sentence_end(text, word_end, language)
            if end is None:
                return 0  # decided by text not written yet
            if end:
                return end
        start = word_end
    return 0


def _next_word_end(text: str, start: int) -> int | None:
    """End of the next finished word (one followed by whitespace) from ``start``."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    if i == len(text):
        return None
    while i < len(text) and not text[i].isspace():
        i += 1
    return i if i < len(text) else None


def _ends_first_piece(word: str, words: int, rule: PieceRule) -> bool:
    if rule.first_words is not None and words >= rule.first_words:
        return True
    clause_words = rule.clause_words
    return clause_words is not None and word[-1:] in CLAUSE_MARKS and words >= clause_words


def _sentence_end(text: str, gap: int, language: str) -> int | None:
    """The sentence end the tokenizer confirms after a mark at ``gap``: 0 none, None not yet.

    It looks once at the next word's first character ("Hello. N" is enough) and
    once more at that word's end ("Albert I. Douglas"); never at a part of a
    word in between, which could pass for a sentence start.
    """
    i = gap
    while i < len(text) and (text[i].isspace() or text[i] in SENTENCE_ENDING_PUNCTUATION):
        i += 1
    if i == len(text):
        return None
    if end := match_endofsentence(text[: i + 1], language=language):
        return end
    while i < len(text) and not (text[i].isspace() or text[i] in SENTENCE_ENDING_PUNCTUATION):
        i += 1
    if i == len(text):
        return None
    return match_endofsentence(text[:i], language=language)


class SpeechTextSplitter:
    """Cuts one reply after another into pieces as their text streams in.

    :meth:`feed` returns the pieces the new text completed; :meth:`finish`
    ends the reply and returns its unfinished tail; :meth:`clear` drops the
    unspoken text of an interrupted reply. Either way the next text starts a
    new reply, whose first piece may again end early.
    """

    def __init__(self, rule: PieceRule | None = None, *, language: str = "en") -> None:
        self.rule = rule or PieceRule()
        self.language = language
        self._pending = ""
        self._first = True

    @property
    def pending(self) -> str:
        """The text fed and not yet cut into a piece."""
        return self._pending

    def feed(self, text: str) -> list[str]:
        """Add streamed text; the pieces it completed, stripped."""
        self._pending += text
        pieces = []
        while end := piece_end(self._pending, self.rule, first=self._first, language=self.language):
            pieces.append(self._pending[:end].strip())
            self._pending = self._pending[end:].lstrip()
            self._first = False
        return pieces

    def finish(self) -> str | None:
        """End the reply: its unfinished tail, stripped, or None when nothing is left."""
        rest = self._pending.strip()
        self.clear()
        return rest or None

    def clear(self) -> None:
        """Drop the text not yet cut; the next text starts a new reply."""
        self._pending = ""
        self._first = True


def split_text(text: str, rule: PieceRule | None = None, *, language: str = "en") -> list[str]:
    """Every piece of one whole reply's ``text``."""
    splitter = SpeechTextSplitter(rule, language=language)
    pieces = splitter.feed(text)
    if (rest := splitter.finish()) is not None:
        pieces.append(rest)
    return pieces
