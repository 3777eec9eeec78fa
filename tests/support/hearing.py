"""Judging what Whisper heard against what was said, with margins a loaded machine keeps.

Word error rate over a short line is brittle: tiny.en splitting one word
("London" -> "One then") costs a substitution and an insertion, 13 % of a
15-word reply, and a second slip on "sunny" -> "signing" put the chained test
at its limit. A line is judged here by its content words instead (function
words carry nothing a test checks and are the ones Whisper drops or swaps),
allowing one miss in four, at least one: a reply that is missing, another
line, or cut in half still fails; one misheard word does not.

Bot audio from a paced call sits on the call's time line, after the caller
spoke and the models worked: 30-60 s into the track on a loaded machine.
Whisper hears long audio in 30 s windows, so a reply straddling a window
edge after half a minute of silence lost its first half ("of 21 degrees
Celsius."). :func:`bot_speech` cuts the track to the bot's audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxpipe.evaluation import normalise

if TYPE_CHECKING:
    from voxpipe.transports.file import FileTransport

FUNCTION_WORDS = frozenset(
    """
    a an the and or but so of in on at to for from with by as
    is are was were be been am do does did
    it its this that these those there here what
    i you we he she they me my your our
    """.split()  # noqa: SIM905 - read as the word list it is
)


def content_words(text: str) -> list[str]:
    """The words of ``text`` a listener needs, normalised (numbers spelled out)."""
    return [word for word in normalise(text).split() if word not in FUNCTION_WORDS]


def _minus(words: list[str], other: list[str]) -> list[str]:
    left = list(other)
    out = []
    for word in words:
        if word in left:
            left.remove(word)
        else:
            out.append(word)
    return out


@dataclass(frozen=True)
class Hearing:
    """What was said against what was heard, by content word."""

    said: list[str]
    heard: list[str]

    @property
    def missed(self) -> list[str]:
        """Said but not heard."""
        return _minus(self.said, self.heard)

    @property
    def extra(self) -> list[str]:
        """Heard but never said."""
        return _minus(self.heard, self.said)

    @property
    def slips(self) -> int:
        """How many words may be misheard: one in four, at least one."""
        return max(1, len(self.said) // 4)


def hearing(said: str, heard: str) -> Hearing:
    """Compare two lines by content word; ``said`` must have more than one to judge."""
    result = Hearing(content_words(said), content_words(heard))
    assert len(result.said) > result.slips, f"too few content words to judge: {said!r}"
    return result


def assert_heard(said: str, heard: str, *, nothing_else: bool = False) -> None:
    """``heard`` holds ``said``, give or take a slip; with ``nothing_else``, only it."""
    judged = hearing(said, heard)
    assert len(judged.missed) <= judged.slips, (said, heard, judged.missed)
    if nothing_else:  # a misheard word is a miss and an extra; more extras are other words
        assert len(judged.extra) <= judged.slips, (said, heard, judged.extra)


def bot_speech(transport: FileTransport) -> bytes:
    """The bot's track from its first written chunk on: what the caller heard, minus the wait."""
    assert transport.written, "the bot never spoke"
    rate = transport.bot.sample_rate
    start = int(transport.written[0].at_ms * rate / 1000) * 2
    return transport.bot_pcm()[start:]
