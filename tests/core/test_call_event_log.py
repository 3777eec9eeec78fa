"""The realtime service's event log: a bounded window of the newest events, every one counted."""

from __future__ import annotations

import pytest

from voxpipe.call.event_log import EventLog
from voxpipe.call.events import ResponseCreated, StateChanged
from voxpipe.call.state import CallState, CallTrigger
from voxpipe.errors import ConfigError


def created(n: int) -> ResponseCreated:
    return ResponseCreated(f"resp_{n}")


def test_the_log_keeps_the_newest_events_and_counts_them_all() -> None:
    log = EventLog(keep=3)
    for n in range(10):
        log.append(created(n))
    log += [
        StateChanged(
            CallState.LISTENING, CallState.THINKING, CallTrigger.RESPONSE_REQUESTED, 0, None, None
        )
    ]
    assert [type(e).__name__ for e in log] == ["ResponseCreated"] * 2 + ["StateChanged"]
    assert log[0] == created(8) and log[1] == created(9)
    assert (len(log), log.total, log.dropped, log.keep) == (3, 11, 8, 3)
    assert log.count(ResponseCreated) == 10 and log.count(StateChanged) == 1
    assert log[-1] == next(e for e in log if isinstance(e, StateChanged))


def test_a_short_call_keeps_everything_in_order() -> None:
    log = EventLog()
    log.extend(created(n) for n in range(100))
    assert list(log) == [created(n) for n in range(100)] and log.dropped == 0


@pytest.mark.parametrize("keep", [0, -1])
def test_a_log_that_keeps_nothing_is_refused(keep: int) -> None:
    with pytest.raises(ConfigError):
        EventLog(keep=keep)
