"""How much of a cut reply's transcript the caller heard, from how much of its audio played.

A realtime provider streams a reply's transcript as text deltas beside its
audio, and gives no word timings. When a reply is cut (a barge-in, a brain
switch), the call knows how much of the reply's audio it *received* and how
much the caller *heard* (the playback ledger); what it must remember is the
words the caller heard, every one of them and none they did not.

Each delta is anchored to the audio received when it arrived
(:class:`TextDelta`): a provider that sends each word's text just before its
audio gives every word its own anchor, one whose text runs ahead gives many
deltas the same anchor. The text between two anchors is spread over the
audio between them in proportion to its characters (speech takes time
roughly by letter, not by word: "Honshu" outlasts "is"), and the text after
the last anchor over the audio received since, or, when the earlier anchors
set a pace, over as long as that pace says its letters take (its audio may
have been cut before it all came). Text that arrived with no audio after it
was never heard.

A partly heard word counts as heard once half of its estimated audio has
played: by then a listener has usually recognised it (and the words they
repeat back show it), while a word cut in its first half is a syllable at
most. This is also how ``benchmarks/failover.py`` scores what was heard.

Before this module the heard share of the *word count* was rounded down
(``int(len(words) * played / received)``): any reply cut mid-way lost its last
heard word (18 of 19 brain switches in the failover benchmark), and an even
split by word misplaced long and short words.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

_WORD = re.compile(r"\S+")


@dataclasses.dataclass(frozen=True)
class TextDelta:
    """A piece of a reply's transcript and the reply audio received (ms) when it came."""

    audio_ms: float
    text: str


def heard_text(deltas: Sequence[TextDelta], played_ms: float, received_ms: float) -> str:
    """The words of ``deltas`` the caller heard, given ``played_ms`` of ``received_ms`` audio.

    Words are kept in order and joined by single spaces (see the module
    docstring for how their audio is estimated and when a word counts).
    """
    text, char_ms = _char_times(deltas, received_ms)
    heard = []
    for match in _WORD.finditer(text):
        start, end = char_ms[match.start()], char_ms[match.end()]
        if end <= start or played_ms < (start + end) / 2:
            break  # words come in order: after the first unheard one, none was heard
        heard.append(match.group())
    return " ".join(heard)


def _char_times(deltas: Sequence[TextDelta], received_ms: float) -> tuple[str, list[float]]:
    """The whole text and, for each character boundary 0..len, its estimated audio time."""
    # Group consecutive deltas by anchor; anchors never go back (audio only accumulates).
    groups: list[tuple[float, str]] = []
    for delta in deltas:
        anchor = max(delta.audio_ms, groups[-1][0] if groups else 0.0)
        if groups and groups[-1][0] == anchor:
            groups[-1] = (anchor, groups[-1][1] + delta.text)
        else:
            groups.append((anchor, delta.text))
    if not groups:
        return "", [0.0]
    times: list[float] = []
    for i, (start, chunk) in enumerate(groups):
        end = groups[i + 1][0] if i + 1 < len(groups) else _last_end(groups, received_ms)
        span = end - start
        times += [start + span * k / max(1, len(chunk)) for k in range(len(chunk))]
    times.append(_last_end(groups, received_ms))
    return "".join(chunk for _, chunk in groups), times


def _last_end(groups: list[tuple[float, str]], received_ms: float) -> float:
    """Where the last anchor's text ends in the audio.

    Its audio may have only begun to arrive: with earlier anchors the pace
    they set (ms per character) says how long its text takes, so a word
    whose audio was cut short is not taken as heard; with one anchor only,
    its text is spread over the audio received.
    """
    start, chunk = groups[-1]
    end = max(start, received_ms)
    before = sum(len(text) for _, text in groups[:-1])
    if before:
        pace = (start - groups[0][0]) / before
        end = max(end, start + pace * len(chunk))
    return end
