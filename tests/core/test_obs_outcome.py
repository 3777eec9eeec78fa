"""How a call ended, read from its timeline: a call that ends while its brain reconnects says so."""

from __future__ import annotations

from typing import Any

import pytest

from voxpipe.observability.outcome import BrainAtEnd, call_outcome
from voxpipe.timeline import EventKind, Timeline

REFUSED = "Cannot connect to host 127.0.0.1:9 [Connect call failed]"

# Each step: (kind, data). The call always starts and ends.
READY = (EventKind.STATE_CHANGED, {"from": "idle", "to": "listening", "trigger": "session_ready"})
BACK = (
    EventKind.STATE_CHANGED,
    {"from": "reconnecting", "to": "listening", "trigger": "session_ready"},
)
LOST = (
    EventKind.STATE_CHANGED,
    {"from": "listening", "to": "reconnecting", "trigger": "connection_lost"},
)


def failed(attempt: int, reason: str = REFUSED) -> tuple[EventKind, dict[str, Any]]:
    return EventKind.RECONNECT, {"phase": "reconnecting", "attempt": attempt, "reason": reason}


RECONNECTED = (EventKind.RECONNECT, {"phase": "reconnected", "attempts": 2})
GAVE_UP = (EventKind.ERROR, {"error": "gave up after 6 consecutive reconnects", "fatal": True})
HANDLED = (EventKind.ERROR, {"error": "a response failed", "fatal": False})
SWITCHED = (EventKind.BRAIN_SWITCHED, {"from": "realtime", "to": "chained", "reason": "gave_up"})

SCENARIOS: list[tuple[str, list[tuple[EventKind, dict[str, Any]]], BrainAtEnd, str | None, int]] = [
    ("a call that went well", [READY, HANDLED], BrainAtEnd.COMPLETED, None, 0),
    (
        "the brain came back before the end",
        [READY, LOST, failed(1, "closed 1011"), failed(2), RECONNECTED, BACK],
        BrainAtEnd.COMPLETED,
        None,
        0,
    ),
    (
        "the retry budget was spent",
        [*(failed(n) for n in range(1, 7)), GAVE_UP],
        BrainAtEnd.FAILED,
        "gave up after 6 consecutive reconnects",
        0,
    ),
    (
        "the call ended before the brain ever connected",
        [failed(1, "closed 1006"), failed(2), failed(3)],
        BrainAtEnd.BEFORE_BRAIN_CONNECTED,
        f"the call ended before the brain connected: 3 connection attempts failed"
        f" (last error: {REFUSED})",
        3,
    ),
    (
        "one failed attempt",
        [failed(1)],
        BrainAtEnd.BEFORE_BRAIN_CONNECTED,
        f"the call ended before the brain connected: 1 connection attempt failed"
        f" (last error: {REFUSED})",
        1,
    ),
    (
        "the session was lost and had not come back",
        [READY, LOST, failed(1, "closed 1011"), failed(2)],
        BrainAtEnd.WHILE_BRAIN_RECONNECTING,
        f"the call ended while the brain was reconnecting: the session was lost and 1 reconnect"
        f" failed (last error: {REFUSED})",
        2,
    ),
    (
        "a second outage counts on its own",
        [READY, LOST, failed(1), RECONNECTED, BACK, LOST, failed(1, "closed 1011")],
        BrainAtEnd.WHILE_BRAIN_RECONNECTING,
        "the call ended while the brain was reconnecting: the session was lost and 0 reconnects"
        " failed (last error: closed 1011)",
        1,
    ),
    (
        "the fallback brain took the call",
        [failed(1), failed(2), SWITCHED],
        BrainAtEnd.COMPLETED,
        None,
        0,
    ),
]


@pytest.mark.parametrize(
    ("steps", "end", "reason", "failures"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_how_the_call_ended(
    steps: list[tuple[EventKind, dict[str, Any]]],
    end: BrainAtEnd,
    reason: str | None,
    failures: int,
) -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="realtime")
    for t, (kind, data) in enumerate(steps, start=1):
        timeline.add(t * 100, kind, **data)
    timeline.add(10_000, EventKind.CALL_ENDED)
    outcome = call_outcome(timeline)
    assert (outcome.end, outcome.reason, outcome.failed_connects) == (end, reason, failures)
    assert outcome.failed is (end is not BrainAtEnd.COMPLETED)
    assert outcome.as_dict() == {"end": end.value, "reason": reason, "failed_connects": failures}


def test_an_empty_timeline_is_a_completed_call() -> None:
    assert call_outcome(Timeline()).end is BrainAtEnd.COMPLETED
