"""A long call's realtime service keeps a bounded window of its events, and counts them all.

It used to keep every event of the call in a list (about ten a turn, for the
whole call). A scripted call of eight turns with a window of 16: the service
holds the newest 16, in order, and its counts match every event its
``on_call_event`` handler saw.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from realtime_calls import compose, realtime_call

from voxpipe.call.event_log import EventLog
from voxpipe.call.events import ResponseCreated

LINES = [
    "What time do you open on Saturday?",
    "Do you take cards?",
    "Is there parking nearby?",
    "Can I order online?",
    "Do you deliver on Sundays?",
    "Is the pharmacy open late?",
    "Do you sell stamps?",
    "Thank you, goodbye.",
]
KEEP = 16


async def test_a_long_calls_events_stay_within_the_window(make_speech: Any, tmp_path: Path) -> None:
    recording = tmp_path / "caller.wav"
    parts: list[str | int] = [500]
    for line in LINES:
        parts += [line, 2500]
    compose(make_speech, parts, recording)
    async with realtime_call(recording, script=["Sure.", "Yes, of course."]) as call:
        before = call.service.events.total  # published before the window was put in
        call.service.events = log = EventLog(keep=KEEP)
        await call.input_done()
        await call.wait_for(lambda: log.count(ResponseCreated) >= len(LINES), 60.0)
        # pipecat runs each on_call_event handler as a task: wait until the test's has seen
        # every event the log has (no await between this check and the copies below).
        await call.wait_for(lambda: len(call.events) - before == log.total, 20.0)
        seen = list(call.events[before:])
        kept = list(log)
    print(
        f"\n{log.total} events in {len(LINES)} turns ({log.total / len(LINES):.1f} a turn),"
        f" {len(kept)} kept, {log.dropped} counted only"
    )
    assert len(kept) == KEEP  # bounded, however long the call
    assert log.total == len(seen) > 2 * KEEP  # every event counted
    assert kept == seen[-KEEP:]  # the newest, in order
    assert log.counts == collections.Counter(type(e) for e in seen)
