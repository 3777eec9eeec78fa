"""The word gate: pattern policies see every finished word before it moves on.

Pattern policies (deny lists, PII) are synchronous and cheap, so the tap runs
them on each text delta instead of waiting for the debounce cadence: nothing
that could be a whole word leaves the tap unscanned. On the chained path that
is what guarantees a deny-listed word never reaches the TTS, at no added
latency (the TTS holds text until a sentence boundary anyway, and a boundary
is itself a non-word character, so the text it releases is always scanned).

Only text up to the last non-word character is scanned: a delta that ends
inside a word (``"kill"`` of ``"killing"``) would otherwise match a whole-word
rule too early. Each scan covers the new text plus the policy's overlap and a
little look-behind context, copied out as a window, so the work and the
copying over a response stay linear in its length.

Also :class:`SafePrefix`, the context transform sent after a trip: on an
interruption pipecat's assistant aggregator commits what it aggregated of the
response so far (spoken text on the chained path, transcript deltas on the
realtime path); the transform cuts that message before the offending span, or
removes it when the whole response was unsafe.

No I/O and no pipecat here: the tap drives them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voxpipe.guardrails import CheckDue, GuardrailDebouncer, IncrementalScanner, Judgement, Verdict

LOOKBEHIND_CHARS = 64
"""Text before a scan's start that a pattern's look-behind or ``\\b`` may read."""

_NON_WORD = re.compile(r"\W")


@dataclass
class _Text:
    """The part of one response the gate still needs: a tail starting at ``origin``."""

    response_id: str
    tail: str = ""
    origin: int = 0  # offset of tail[0] in the response text
    length: int = 0  # characters of the response so far
    stable: int = 0  # text[:stable] ends at a non-word character
    scanned: dict[str, int] = field(default_factory=dict)


class WordGate:
    """Scans each response's finished words with the pattern policies, once each."""

    def __init__(self, core: GuardrailDebouncer, scanners: Sequence[IncrementalScanner]) -> None:
        self._core = core
        self._scanners = list(scanners)
        self._keep = max((s.overlap_chars for s in self._scanners), default=0) + LOOKBEHIND_CHARS
        self._current: _Text | None = None
        self.scans = 0
        self.chars_scanned = 0

    @property
    def scanners(self) -> list[IncrementalScanner]:
        """The pattern policies the gate runs."""
        return list(self._scanners)

    def feed(self, response_id: str, delta: str) -> Judgement | None:
        """Add ``delta``; scan the words it finished. Spans index the whole response.

        Returns the first trip, else None.
        """
        current = self._current
        if current is None or current.response_id != response_id:
            current = self._current = _Text(response_id)
        if not self._scanners or not delta:
            return None
        current.tail += delta
        current.length += len(delta)
        last = last_non_word(delta)
        if last < 0:
            return None  # still inside a word: nothing new is finished
        current.stable = current.length - len(delta) + last + 1
        judgement = self._scan(current)
        self._trim(current)
        return judgement

    def end(self, response_id: str) -> None:
        """Forget the response (the final check scans it whole)."""
        if self._current is not None and self._current.response_id == response_id:
            self._current = None

    def _scan(self, current: _Text) -> Judgement | None:
        for scanner in self._scanners:
            done = current.scanned.get(scanner.name, 0)
            if done >= current.stable:
                continue
            start = max(0, done - scanner.overlap_chars)
            origin = max(current.origin, start - LOOKBEHIND_CHARS)
            window = current.tail[origin - current.origin : current.stable - current.origin]
            check = CheckDue(current.response_id, window, final=False)
            self.scans += 1
            self.chars_scanned += current.stable - start
            try:
                result: object = scanner.scan(window, start - origin)
            except Exception as exc:  # a policy bug must not end the call
                result = exc
            current.scanned[scanner.name] = current.stable
            judgement = self._core.judge(check, scanner.name, result)
            if judgement.verdict.tripped:
                return _shifted(judgement, origin)
        return None

    def _trim(self, current: _Text) -> None:
        # Keep what a later scan can still look at: the overlap and look-behind
        # before the stable end, and the unfinished word after it.
        keep_from = max(current.origin, current.stable - self._keep)
        if keep_from - current.origin > self._keep:
            current.tail = current.tail[keep_from - current.origin :]
            current.origin = keep_from


def last_non_word(text: str) -> int:
    """Index of the last non-word character of ``text``; -1 when it is all one word."""
    for index in range(len(text) - 1, -1, -1):
        if _NON_WORD.match(text[index]):
            return index
    return -1


def _shifted(judgement: Judgement, origin: int) -> Judgement:
    verdict = judgement.verdict
    if verdict.start is None or verdict.end is None or origin == 0:
        return judgement
    moved = Verdict(verdict.outcome, verdict.rule, verdict.start + origin, verdict.end + origin)
    return Judgement(judgement.policy, moved, judgement.failure, judgement.follow_up)


def _norm(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class SafePrefix:
    """A message transform: cut this response's assistant message to ``response[:keep]``."""

    response_text: str
    keep: int

    def __call__(self, messages: list[Any]) -> list[Any]:
        """Return ``messages`` with the response's message cut (a new list)."""
        whole = _norm(self.response_text)
        safe = _norm(self.response_text[: self.keep])
        result = list(messages)
        for index in range(len(result) - 1, -1, -1):
            message = result[index]
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            content = message.get("content")
            if not isinstance(content, str) or not _norm(content):
                continue
            said = _norm(content)
            if not whole.startswith(said):
                return result  # the latest assistant message is not this response
            if len(said) <= len(safe):
                return result  # nothing unsafe was kept
            cut = said[: len(safe)].strip()
            if cut:
                result[index] = {**message, "content": cut}
            else:
                del result[index]
            return result
        return result
