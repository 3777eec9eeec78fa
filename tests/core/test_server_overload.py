"""The overload signal (issue 19): a loop's timer lateness in, admit or refuse out.

Sans-I/O with time passed in: every sample is (when the timer fired, how late).
"""

from __future__ import annotations

import pytest

from voxpipe.errors import ConfigError
from voxpipe.realtime_server.overload import OverloadGuard, OverloadLimits

LIMITS = OverloadLimits(lag_ms=20.0, window_ms=2_000, interval_ms=50)


def feed(guard: OverloadGuard, start_ms: float, end_ms: float, lateness_ms: float) -> float:
    """Samples every interval (plus their lateness) from ``start_ms``; the last time."""
    now = start_ms
    while now < end_ms:
        now += LIMITS.interval_ms + lateness_ms
        guard.observe(now, lateness_ms)
    return now


def test_a_quiet_loop_admits_and_says_so_only_once_it_has_samples() -> None:
    guard = OverloadGuard(LIMITS)
    assert guard.lag_ms(0) is None and guard.admit(0)  # nothing measured yet: not refused
    now = feed(guard, 0, 2_000, 1.5)
    assert guard.lag_ms(now) == pytest.approx(1.5)
    assert guard.admit(now) and guard.refused == 0


def test_one_stall_does_not_refuse_but_a_saturated_loop_does_until_it_recovers() -> None:
    guard = OverloadGuard(LIMITS)
    now = feed(guard, 0, 2_000, 1.0)
    guard.observe(now + 300, 300.0)  # a GC pause or a neighbour's burst: one late timer
    now = feed(guard, now + 300, now + 800, 1.0)
    assert not guard.overloaded(now)
    now = feed(guard, now, now + 1_500, 35.0)  # every timer 35 ms late: calls hear it
    assert guard.overloaded(now)
    assert not guard.admit(now) and not guard.admit(now) and guard.refused == 2
    now = feed(guard, now, now + 400, 1.0)  # better, but the window still holds the load
    assert guard.overloaded(now)
    now = feed(guard, now, now + 2_000, 1.0)  # a whole quiet window
    assert not guard.overloaded(now) and guard.admit(now)


def test_a_loop_held_longer_than_the_window_is_still_overloaded() -> None:
    # A held loop takes no samples meanwhile: the few it took before the hold, and the
    # one after it, must not be forgotten as too old to count.
    guard = OverloadGuard(LIMITS)
    now = feed(guard, 0, 1_000, 40.0)
    guard.observe(now + 5_000, 5_000.0)
    assert guard.overloaded(now + 5_000)
    assert guard.lag_ms(now + 5_000) == pytest.approx(40.0)


@pytest.mark.parametrize(
    "limits",
    [
        {"lag_ms": 0},
        {"lag_ms": float("nan")},
        {"interval_ms": 0},
        {"window_ms": 100, "interval_ms": 50},
    ],
)
def test_limits_that_cannot_work_are_config_errors(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="overload"):
        OverloadLimits(**limits)  # type: ignore[arg-type]
