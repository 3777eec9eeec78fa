"""Which conversation items a response reads: the session's ``truncation``.

OpenAI's model reads at most 28,224 tokens (a 32k context less 4,096 output
tokens); past that the oldest items drop out of what the model sees, though
they stay in the conversation. The session's ``truncation`` says how:
``"auto"`` (the default) drops just enough; a ``retention_ratio`` drops down
to that fraction of the limit, so the next turns grow into the room and the
cached prefix stays warm (the cut stays put until the limit is reached again);
``token_limits.post_instructions`` lowers the limit; ``"disabled"`` never
drops, and a response that would not fit is refused instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from voxpipe.realtime_server.protocol_errors import ErrorCode, invalid_request

MODEL_INPUT_TOKENS = 28_224


class HasId(Protocol):
    """Anything with an item id."""

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=HasId)


@dataclass(frozen=True)
class TruncationPolicy:
    """The session's ``truncation`` as numbers."""

    enabled: bool
    limit: int  # conversation tokens (after instructions and tools) the model reads
    retain: float  # fraction of ``limit`` left after a cut

    @classmethod
    def from_session(cls, spec: Any, instruction_tokens: int) -> TruncationPolicy:
        """From ``session.truncation`` (``None``/``"auto"``/``"disabled"``/retention ratio)."""
        limit = max(0, MODEL_INPUT_TOKENS - instruction_tokens)
        if spec == "disabled":
            return cls(enabled=False, limit=limit, retain=1.0)
        retain = 1.0
        if isinstance(spec, dict):
            retain = float(spec.get("retention_ratio", 1.0))
            post = (spec.get("token_limits") or {}).get("post_instructions")
            if isinstance(post, int) and post >= 0:
                limit = min(limit, post)
        return cls(enabled=True, limit=limit, retain=retain)


class ContextWindow:
    """The items cut from the model's context, remembered across responses."""

    def __init__(self) -> None:
        self._dropped: set[str] = set()
        self.cuts = 0

    def visible(self, records: Sequence[R]) -> list[R]:
        """``records`` less those already cut from the model's context."""
        return [r for r in records if r.id not in self._dropped]

    def fit(
        self, records: Sequence[R], tokens: Callable[[R], int], policy: TruncationPolicy
    ) -> list[R]:
        """The newest items that fit ``policy`` (the newest one always stays)."""
        kept = self.visible(records)
        self._dropped &= {r.id for r in records}  # forget ids no longer in the conversation
        costs = [tokens(r) for r in kept]
        total = sum(costs)
        if total <= policy.limit:
            return kept
        if not policy.enabled:
            raise invalid_request(
                ErrorCode.CONTEXT_TOO_LONG,
                f"The conversation is {total} tokens, over the model's input limit of "
                f"{policy.limit}, and truncation is disabled.",
                param="session.truncation",
            )
        target = policy.limit * policy.retain
        first = 0
        while first < len(kept) - 1 and total > target:
            total -= costs[first]
            first += 1
        self._dropped |= {r.id for r in kept[:first]}
        self.cuts += 1
        return kept[first:]
