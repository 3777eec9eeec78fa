"""Deny lists and regular expressions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from voxpipe.errors import ConfigError
from voxpipe.guardrails.policy import ALLOWED, Verdict

# Phrases of common prompt-injection attempts, as a caller would say them; for
# input guardrails on the user's transcript. A starting point, not a defence.
PROMPT_INJECTION_PATTERNS: tuple[str, ...] = (
    r"\b(?:ignore|disregard|forget)\s+(?:(?:all|any|the|your|of|my)\s+)*"
    r"(?:previous|prior|above|earlier|system)\s+(?:instructions|prompts?|rules|guidelines)",
    r"\b(?:reveal|show|print|repeat|read)\s+(?:me\s+)?"
    r"(?:(?:your|the)\s+(?:system|hidden)\s+prompt|your\s+(?:instructions|rules))",
    r"\b(?:enable|enter|activate|you\s+are\s+now\s+in)\s+(?:developer|jailbreak|dan|god)\s+mode",
    r"\bpretend\s+(?:that\s+)?you\s+(?:have\s+no|don't\s+have\s+any)\s+"
    r"(?:rules|restrictions|guidelines|filters)",
)


class DenyPolicy:
    """Trips on any listed word or phrase (case-insensitive, whole words) or regex match.

    ``overlap_chars`` bounds how long a match may be and still be caught when
    it straddles two checks; a longer match is still caught by the final check
    of the response, which scans everything.
    """

    def __init__(
        self,
        patterns: Sequence[str] = (),
        words: Sequence[str] = (),
        *,
        name: str = "deny",
        overlap_chars: int = 200,
        ignore_case: bool = True,
    ) -> None:
        flags = re.IGNORECASE if ignore_case else 0
        self._rules: list[tuple[str, re.Pattern[str]]] = []
        for pattern in patterns:
            try:
                compiled = re.compile(pattern, flags)
            except re.error as exc:
                raise ConfigError(
                    f"deny pattern {pattern!r} is not a regular expression: {exc}"
                ) from None
            if compiled.search("") is not None:
                # A pattern that matches nothing at all would trip every response.
                raise ConfigError(f"deny pattern {pattern!r} matches the empty string")
            self._rules.append((pattern, compiled))
        for word in words:
            if not word.strip():
                raise ConfigError("deny words must not be empty")
            self._rules.append((word, re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", flags)))
        self._name = name
        self._overlap = overlap_chars

    @property
    def name(self) -> str:
        """Policy name for logs and metrics."""
        return self._name

    @property
    def overlap_chars(self) -> int:
        """Longest match guaranteed to be caught across a check boundary."""
        return self._overlap

    def scan(self, text: str, start: int = 0) -> Verdict:
        """The earliest match at or after ``start``, as a trip; else allowed."""
        best: Verdict = ALLOWED
        for rule, pattern in self._rules:
            # search(pos=...) keeps the text before ``start`` visible to
            # look-behinds and \b without copying the string.
            match = pattern.search(text, start)
            if match and (best.start is None or match.start() < best.start):
                best = Verdict.trip(f"{self._name}:{rule}", match.start(), match.end())
        return best

    async def check(self, text: str) -> Verdict:
        """Scan the whole text."""
        return self.scan(text)

    @classmethod
    def prompt_injection(cls, *, name: str = "prompt_injection") -> DenyPolicy:
        """An input guardrail for the user's transcript: common injection phrases."""
        return cls(patterns=PROMPT_INJECTION_PATTERNS, name=name)
