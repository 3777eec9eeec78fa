"""Rate-limit tracker: low-water marks and warnings an operator acts on."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.realtime import RateLimitsUpdatedEvent

from voxpipe.errors import ConfigError
from voxpipe.observability.ratelimits import (
    RateLimitName,
    RateLimitSource,
    RateLimitTracker,
    parse_reset,
)

REQ_RT = (RateLimitName.REQUESTS, RateLimitSource.REALTIME)
TOK_RT = (RateLimitName.TOKENS, RateLimitSource.REALTIME)


def _event(requests: int, tokens: int) -> dict[str, Any]:
    return {
        "type": "rate_limits.updated",
        "event_id": "evt_1",
        "rate_limits": [
            {"name": "requests", "limit": 1000, "remaining": requests, "reset_seconds": 60},
            {"name": "tokens", "limit": 100_000, "remaining": tokens, "reset_seconds": 2.5},
        ],
    }


def test_realtime_event_updates_latest_and_low_water() -> None:
    tracker = RateLimitTracker(warn_below=0.1)
    assert tracker.on_realtime_event(_event(900, 50_000), now_ms=0) == []
    assert tracker.on_realtime_event(_event(950, 80_000), now_ms=1000) == []
    assert tracker.latest[TOK_RT].remaining == 80_000
    assert tracker.low_water[TOK_RT].remaining == 50_000
    assert tracker.low_water[TOK_RT].at_ms == 0
    assert tracker.low_water[REQ_RT].remaining == 900


def test_typed_event_is_accepted() -> None:
    tracker = RateLimitTracker()
    event = RateLimitsUpdatedEvent.model_validate(_event(10, 50_000))
    warnings = tracker.on_realtime_event(event, now_ms=5)
    assert [w.reading.name for w in warnings] == [RateLimitName.REQUESTS]


def test_warns_once_per_fall_and_again_after_recovery() -> None:
    tracker = RateLimitTracker(warn_below=0.2)
    seen = [
        len(tracker.on_realtime_event(_event(1000, tokens), now_ms=i))
        for i, tokens in enumerate([50_000, 19_000, 10_000, 30_000, 5_000])
    ]
    assert seen == [0, 1, 0, 0, 1]
    assert tracker.is_low(*TOK_RT)
    assert tracker.low_water[TOK_RT].remaining == 5_000


def test_warning_text_names_the_limit_and_numbers() -> None:
    tracker = RateLimitTracker(warn_below=0.1)
    [warning] = tracker.on_realtime_event(_event(1000, 2_000), now_ms=0)
    assert str(warning) == (
        "rate limit tokens (realtime) low: 2000/100000 left (2.0% < 10%), resets in 2.5s"
    )


def test_http_headers_are_read_case_insensitively_with_reset_durations() -> None:
    tracker = RateLimitTracker(warn_below=0.5)
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "X-RateLimit-Remaining-Requests": "499",
        "X-RateLimit-Reset-Requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    [warning] = tracker.on_http_headers(headers, now_ms=7)
    assert warning.reading.name is RateLimitName.TOKENS
    assert warning.reading.reset_s == 360
    requests = tracker.latest[(RateLimitName.REQUESTS, RateLimitSource.HTTP)]
    assert requests.reset_s == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("1.5s", 1.5), ("20ms", 0.02),
     ("soon", None), ("", None), ("5x", None)],
)  # fmt: skip
def test_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (None if seconds is None else pytest.approx(seconds))


def test_garbage_entries_are_counted_not_crashing() -> None:
    tracker = RateLimitTracker()
    event = {"rate_limits": [{"name": "images", "limit": 5, "remaining": 1}, {"name": "tokens"}]}
    assert tracker.on_realtime_event(event, now_ms=0) == []
    assert tracker.ignored == 2
    assert tracker.on_http_headers({"x-ratelimit-remaining-tokens": "abc"}, now_ms=0) == []
    assert tracker.latest == {}


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1])
def test_threshold_outside_zero_one_is_refused(threshold: float) -> None:
    with pytest.raises(ConfigError):
        RateLimitTracker(warn_below=threshold)
