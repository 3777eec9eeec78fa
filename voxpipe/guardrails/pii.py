"""Personal data in the assistant's words: card numbers, US SSNs, phone numbers, e-mail."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from voxpipe.guardrails.policy import ALLOWED, Verdict


class PiiKind(enum.Enum):
    """The kinds of personal data the policy recognises."""

    CARD = "card"
    SSN = "ssn"
    PHONE = "phone"
    EMAIL = "email"


# Digits in groups separated by single spaces or dashes, 13 to 19 digits in all.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}[- ](?!00)\d{2}[- ](?!0000)\d{4}(?![\w-])")
# NANP (+1 optional, area code in parentheses optional) or E.164 with a plus.
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}|\+[1-9]\d{7,14})(?!\w)"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Longest text a match can span: an e-mail address may be 254 characters.
_LONGEST_MATCH = 254


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum all card numbers carry."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards(text: str, start: int) -> Iterable[re.Match[str]]:
    for match in _CARD.finditer(text, start):
        digits = re.sub(r"[ -]", "", match.group())
        if luhn_valid(digits):
            yield match


def _first(matches: Iterable[re.Match[str]]) -> re.Match[str] | None:
    return next(iter(matches), None)


class PiiPolicy:
    """Trips on card numbers (Luhn-checked), US SSNs, phone numbers and e-mail addresses.

    It reads digits, not spoken numbers: "four one one one ..." in a
    transcript is not recognised.
    """

    def __init__(self, kinds: Iterable[PiiKind] = tuple(PiiKind), *, name: str = "pii") -> None:
        self.kinds = frozenset(kinds)
        self._name = name

    @property
    def name(self) -> str:
        """Policy name for logs and metrics."""
        return self._name

    @property
    def overlap_chars(self) -> int:
        """Longest match that can straddle a check boundary."""
        return _LONGEST_MATCH

    def scan(self, text: str, start: int = 0) -> Verdict:
        """The earliest personal datum at or after ``start``, as a trip; else allowed."""
        found: list[tuple[PiiKind, re.Match[str] | None]] = []
        if PiiKind.CARD in self.kinds:
            found.append((PiiKind.CARD, _first(_cards(text, start))))
        if PiiKind.SSN in self.kinds:
            found.append((PiiKind.SSN, _SSN.search(text, start)))
        if PiiKind.PHONE in self.kinds:
            found.append((PiiKind.PHONE, _PHONE.search(text, start)))
        if PiiKind.EMAIL in self.kinds:
            found.append((PiiKind.EMAIL, _EMAIL.search(text, start)))
        hits = [(m.start(), kind, m) for kind, m in found if m is not None]
        if not hits:
            return ALLOWED
        # The earliest hit; at equal positions the list order (card first) wins.
        _, kind, match = min(hits, key=lambda hit: hit[0])
        return Verdict.trip(f"{self._name}:{kind.value}", match.start(), match.end())

    async def check(self, text: str) -> Verdict:
        """Scan the whole text."""
        return self.scan(text)
