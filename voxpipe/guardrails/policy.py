"""The guardrail policy protocol: text in, :class:`Verdict` out.

Two shapes of policy exist. Every policy is a :class:`GuardrailPolicy`: an
async ``check`` of the whole response text so far (a remote moderation call,
say). Pattern policies (deny lists, PII) are also :class:`IncrementalScanner`:
a synchronous ``scan`` that can start at an offset, so the tap's debounce core
searches only the new text plus a small overlap on each check and the work
over a long response stays linear.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Outcome(enum.Enum):
    """What a policy decided about the text."""

    ALLOWED = "allowed"
    TRIPPED = "tripped"


class FailMode(enum.Enum):
    """What a check that failed (raised, timed out, returned garbage) counts as."""

    OPEN = "open"  # let the text through: availability over safety
    CLOSED = "closed"  # treat it as a trip: safety over availability


@dataclass(frozen=True)
class Verdict:
    """A policy's decision; on a trip, ``rule`` names what fired and ``start``/``end``
    locate the offending span in the text that was checked (``None`` if unknown)."""

    outcome: Outcome
    rule: str | None = None
    start: int | None = None
    end: int | None = None

    @property
    def tripped(self) -> bool:
        """True when the text must not be spoken."""
        return self.outcome is Outcome.TRIPPED

    @classmethod
    def allow(cls) -> Verdict:
        """The text passed."""
        return ALLOWED

    @classmethod
    def trip(cls, rule: str, start: int | None = None, end: int | None = None) -> Verdict:
        """The text broke ``rule`` at ``[start, end)``."""
        return cls(Outcome.TRIPPED, rule, start, end)


ALLOWED = Verdict(Outcome.ALLOWED)


@runtime_checkable
class GuardrailPolicy(Protocol):
    """Any policy: an async check of the whole response text so far."""

    @property
    def name(self) -> str:
        """A short stable name for logs, the timeline and metrics labels."""
        ...

    async def check(self, text: str) -> Verdict:
        """Decide about ``text``; may be slow or fail, the tap bounds it."""
        ...


@runtime_checkable
class IncrementalScanner(Protocol):
    """A pattern policy whose check can be confined to new text."""

    @property
    def name(self) -> str:
        """A short stable name for logs, the timeline and metrics labels."""
        ...

    @property
    def overlap_chars(self) -> int:
        """How far before the new text a match may begin (the longest match it looks for)."""
        ...

    def scan(self, text: str, start: int = 0) -> Verdict:
        """Search ``text`` from ``start`` (earlier text is context only); spans index ``text``."""
        ...
