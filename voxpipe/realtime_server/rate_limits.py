"""Per-session rate-limit accounting behind ``rate_limits.updated``.

Two buckets, requests and tokens, refill linearly over a minute. A response
reserves one request and its input plus maximum output tokens when it
starts (so the event at the start of each response already shows the
reservation, as OpenAI's does) and gives back what it did not use when it
ends. Time is passed in as ``now_ms``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from openai.types.realtime.rate_limits_updated_event import RateLimit

WINDOW_MS = 60_000
DEFAULT_MAX_OUTPUT_TOKENS = 4096


class LimitName(enum.Enum):
    """The two limits the protocol reports."""

    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True)
class RateLimitPolicy:
    """Limits per minute."""

    requests_per_minute: int = 5_000
    tokens_per_minute: int = 400_000


@dataclass(frozen=True)
class Reservation:
    """What one response holds until it ends."""

    tokens: int


class _Bucket:
    def __init__(self, limit: int, now_ms: int) -> None:
        self.limit = limit
        self.remaining = float(limit)
        self.updated_ms = now_ms
        self.blocked_until_ms = now_ms

    def refill(self, now_ms: int) -> None:
        if now_ms < self.blocked_until_ms:
            self.updated_ms = now_ms
            return
        start = max(self.updated_ms, self.blocked_until_ms)
        elapsed = max(0, now_ms - start)
        self.remaining = min(self.limit, self.remaining + self.limit * elapsed / WINDOW_MS)
        self.updated_ms = now_ms

    def reset_seconds(self, now_ms: int) -> float:
        wait_ms: float = max(0, self.blocked_until_ms - now_ms)
        wait_ms += (self.limit - self.remaining) / self.limit * WINDOW_MS
        return round(wait_ms / 1000, 3)


class RateLimiter:
    """The request and token buckets of one session."""

    def __init__(self, policy: RateLimitPolicy, now_ms: int) -> None:
        self._buckets = {
            LimitName.REQUESTS: _Bucket(policy.requests_per_minute, now_ms),
            LimitName.TOKENS: _Bucket(policy.tokens_per_minute, now_ms),
        }

    def _refill(self, now_ms: int) -> None:
        for bucket in self._buckets.values():
            bucket.refill(now_ms)

    def reserve(self, tokens: int, now_ms: int) -> Reservation | None:
        """Take one request and ``tokens``, or ``None`` if either is exhausted."""
        self._refill(now_ms)
        requests, budget = self._buckets[LimitName.REQUESTS], self._buckets[LimitName.TOKENS]
        if requests.remaining < 1 or budget.remaining < 1:
            return None
        requests.remaining -= 1
        taken = min(tokens, int(budget.remaining))
        budget.remaining -= taken
        return Reservation(tokens=taken)

    def settle(self, reservation: Reservation, used_tokens: int, now_ms: int) -> None:
        """Give back the part of a reservation the response did not use."""
        self._refill(now_ms)
        budget = self._buckets[LimitName.TOKENS]
        budget.remaining = max(
            0.0, min(budget.limit, budget.remaining + reservation.tokens - used_tokens)
        )

    def exhaust(self, now_ms: int, reset_seconds: float) -> None:
        """Empty both buckets and hold them empty for ``reset_seconds`` (fault injection)."""
        for bucket in self._buckets.values():
            bucket.remaining = 0.0
            bucket.updated_ms = now_ms
            bucket.blocked_until_ms = now_ms + int(reset_seconds * 1000)

    def snapshot(self, now_ms: int) -> list[RateLimit]:
        """The limits as ``rate_limits.updated`` reports them."""
        self._refill(now_ms)
        return [
            RateLimit(
                name=name.value,
                limit=bucket.limit,
                remaining=int(bucket.remaining),
                reset_seconds=bucket.reset_seconds(now_ms),
            )
            for name, bucket in self._buckets.items()
        ]
