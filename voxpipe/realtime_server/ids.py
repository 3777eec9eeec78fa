"""Deterministic identifiers for events, items, responses and calls.

The sans-I/O core never draws randomness itself: the driver passes a seed
(random per session in production, fixed in tests) and ids are that seed
plus a counter, so a transcript of a session is reproducible.
"""

from __future__ import annotations

import enum
import itertools


class IdKind(enum.Enum):
    """The id prefixes OpenAI uses, so logs and clients see familiar shapes."""

    EVENT = "event"
    ITEM = "item"
    RESPONSE = "resp"
    SESSION = "sess"
    CALL = "call"
    CONVERSATION = "conv"


class IdFactory:
    """Hands out ``<prefix>_<seed><counter>`` ids, unique within one factory."""

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._counter = itertools.count(1)

    def new(self, kind: IdKind) -> str:
        """A fresh id of ``kind``."""
        return f"{kind.value}_{self._seed}{next(self._counter):06d}"
