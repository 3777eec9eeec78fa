"""Rate-limit tracking: low-water marks and a warning when headroom runs out.

Two sources feed it: the Realtime ``rate_limits.updated`` event (sent at the
start of each response, with the output tokens already reserved) and the
``x-ratelimit-*`` headers of the chained services' HTTP answers. The tracker
keeps the latest reading and the lowest remaining fraction per limit, and
warns once each time a limit falls below the threshold (it re-arms when the
limit recovers), so a long call does not log the same warning every turn.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxpipe.errors import ConfigError

if TYPE_CHECKING:
    from openai.types.realtime import RateLimitsUpdatedEvent


class RateLimitName(enum.Enum):
    """The limits OpenAI reports."""

    REQUESTS = "requests"
    TOKENS = "tokens"


class RateLimitSource(enum.Enum):
    """Where a reading came from."""

    REALTIME = "realtime"
    HTTP = "http"


@dataclass(frozen=True)
class RateLimitReading:
    """One limit at one moment."""

    name: RateLimitName
    source: RateLimitSource
    limit: int
    remaining: int
    reset_s: float | None
    at_ms: float

    @property
    def fraction(self) -> float:
        """Remaining share of the limit (1.0 for a limit of 0, which cannot run out)."""
        return self.remaining / self.limit if self.limit > 0 else 1.0


@dataclass(frozen=True)
class RateLimitWarning:
    """A limit's remaining share fell below the configured threshold."""

    reading: RateLimitReading
    threshold: float

    def __str__(self) -> str:
        r = self.reading
        return (
            f"rate limit {r.name.value} ({r.source.value}) low: {r.remaining}/{r.limit} left "
            f"({r.fraction:.1%} < {self.threshold:.0%}), resets in {r.reset_s}s"
        )


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_reset(text: str) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value (``"6m0s"``, ``"1.5s"``, ``"20ms"``)."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class RateLimitTracker:
    """Sans-I/O rate-limit state for one call (or one process): feed readings, get warnings."""

    def __init__(self, warn_below: float = 0.1) -> None:
        if not 0.0 < warn_below < 1.0:
            raise ConfigError(f"rate-limit warn_below must lie in (0, 1), got {warn_below}")
        self.warn_below = warn_below
        self.latest: dict[tuple[RateLimitName, RateLimitSource], RateLimitReading] = {}
        self.low_water: dict[tuple[RateLimitName, RateLimitSource], RateLimitReading] = {}
        self.ignored = 0  # readings with an unknown name or missing numbers
        self._warned: set[tuple[RateLimitName, RateLimitSource]] = set()

    def on_realtime_event(
        self, event: RateLimitsUpdatedEvent | Mapping[str, Any], now_ms: float
    ) -> list[RateLimitWarning]:
        """Consume a ``rate_limits.updated`` event; returns the warnings it raises."""
        raw = event if isinstance(event, Mapping) else event.model_dump()
        warnings: list[RateLimitWarning] = []
        for item in raw.get("rate_limits") or []:
            reading = self._realtime_reading(item, now_ms)
            if reading is None:
                self.ignored += 1
                continue
            warnings.extend(self._record(reading))
        return warnings

    def on_http_headers(self, headers: Mapping[str, str], now_ms: float) -> list[RateLimitWarning]:
        """Consume an HTTP response's ``x-ratelimit-*`` headers; returns the warnings."""
        lower = {k.lower(): v for k, v in headers.items()}
        warnings: list[RateLimitWarning] = []
        for name in RateLimitName:
            limit = _int(lower.get(f"x-ratelimit-limit-{name.value}"))
            remaining = _int(lower.get(f"x-ratelimit-remaining-{name.value}"))
            if limit is None or remaining is None:
                continue
            reset = parse_reset(lower.get(f"x-ratelimit-reset-{name.value}", ""))
            reading = RateLimitReading(name, RateLimitSource.HTTP, limit, remaining, reset, now_ms)
            warnings.extend(self._record(reading))
        return warnings

    def is_low(self, name: RateLimitName, source: RateLimitSource) -> bool:
        """True while the latest reading of that limit is below the threshold."""
        reading = self.latest.get((name, source))
        return reading is not None and reading.fraction < self.warn_below

    def _realtime_reading(self, item: Mapping[str, Any], now_ms: float) -> RateLimitReading | None:
        try:
            name = RateLimitName(item.get("name"))
        except ValueError:
            return None
        limit, remaining = item.get("limit"), item.get("remaining")
        if not isinstance(limit, int) or not isinstance(remaining, int):
            return None
        reset = item.get("reset_seconds")
        reset_s = float(reset) if isinstance(reset, int | float) else None
        return RateLimitReading(name, RateLimitSource.REALTIME, limit, remaining, reset_s, now_ms)

    def _record(self, reading: RateLimitReading) -> list[RateLimitWarning]:
        key = (reading.name, reading.source)
        self.latest[key] = reading
        low = self.low_water.get(key)
        if low is None or reading.fraction < low.fraction:
            self.low_water[key] = reading
        if reading.fraction >= self.warn_below:
            self._warned.discard(key)  # recovered: warn again on the next fall
            return []
        if key in self._warned:
            return []
        self._warned.add(key)
        return [RateLimitWarning(reading, self.warn_below)]
