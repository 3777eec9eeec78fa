"""The overload signal: is the event loop too late to keep its live calls in real time?

A process that serves calls streams audio in 20 ms chunks; once its event loop
is held longer than a chunk, every live call hears the gap. A short timer's
lateness measures exactly that (work of this process, and on a shared machine
the wait for a CPU, which hurts the calls the same way). The guard keeps the
lateness of the last ``window_ms`` and calls the process overloaded while the
median of it is at least ``lag_ms``: one stall (a GC pause, a neighbour's
burst) moves a median little, a saturated loop moves it at once. Admission
control refuses a new call while overloaded, rather than degrading the live
ones; the refusal says when to try again.

Sans-I/O: the caller runs the timer and passes each sample with its time.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from voxpipe.errors import ConfigError

DEFAULT_LAG_MS = 50.0
DEFAULT_WINDOW_MS = 2_000
DEFAULT_INTERVAL_MS = 50
MIN_SAMPLES = 3


@dataclass(frozen=True)
class OverloadLimits:
    """When the loop counts as overloaded.

    ``lag_ms``: the median lateness that means overloaded (50 ms: two and a half
    20 ms output chunks late, most of the time; 20 ms, one chunk, is the strict
    choice, but on a shared machine a loop waiting for a CPU gets near it with
    few calls). ``window_ms``: how much recent
    lateness the median covers (also how long the signal lasts after the load
    goes). ``interval_ms``: how often the timer samples.
    """

    lag_ms: float = DEFAULT_LAG_MS
    window_ms: int = DEFAULT_WINDOW_MS
    interval_ms: int = DEFAULT_INTERVAL_MS

    def __post_init__(self) -> None:
        if not self.lag_ms > 0:
            raise ConfigError(f"overload lag_ms must be above 0, not {self.lag_ms}")
        if self.interval_ms < 1 or self.window_ms < self.interval_ms * MIN_SAMPLES:
            raise ConfigError(
                f"overload window_ms ({self.window_ms}) must hold at least {MIN_SAMPLES} "
                f"samples of interval_ms ({self.interval_ms}, at least 1)"
            )


class OverloadGuard:
    """Lateness samples in, an overloaded yes/no (and the figure) out."""

    def __init__(self, limits: OverloadLimits | None = None) -> None:
        self.limits = limits or OverloadLimits()
        self._samples: deque[tuple[float, float]] = deque()  # (at ms, lateness ms)
        self.refused = 0

    def observe(self, now_ms: float, lateness_ms: float) -> None:
        """A timer due ``lateness_ms`` before ``now_ms`` fired at ``now_ms``."""
        self._samples.append((now_ms, max(0.0, lateness_ms)))
        self._forget(now_ms)

    def lag_ms(self, now_ms: float) -> float | None:
        """The median lateness over the window; None with too few samples to say."""
        self._forget(now_ms)
        if len(self._samples) < MIN_SAMPLES:
            return None
        return statistics.median(lateness for _, lateness in self._samples)

    def overloaded(self, now_ms: float) -> bool:
        """Whether a new call should be refused now."""
        lag = self.lag_ms(now_ms)
        return lag is not None and lag >= self.limits.lag_ms

    def admit(self, now_ms: float) -> bool:
        """Admission control: False (and counted) while overloaded."""
        if self.overloaded(now_ms):
            self.refused += 1
            return False
        return True

    def _forget(self, now_ms: float) -> None:
        # The newest few stay however old: a loop held for longer than the window
        # takes no samples meanwhile, and must not read as one with nothing to say.
        horizon = now_ms - self.limits.window_ms
        while len(self._samples) > MIN_SAMPLES and self._samples[0][0] < horizon:
            self._samples.popleft()
