"""Which brain had the call, and for how long: the report's ``brains`` section.

Read from the call's timeline alone (``call_started`` names the brain the
call began on, each ``brain_switched`` the brain it moved to), so a report
rebuilt from ``timeline.jsonl`` says the same.
"""

from __future__ import annotations

from typing import Any

from voxpipe.timeline import EventKind, Timeline


def brain_section(timeline: Timeline) -> dict[str, Any]:
    """Switches (when, from, to, why) and the milliseconds spent on each brain."""
    events = sorted(timeline.events, key=lambda e: e.t_ms)
    if not events:
        return {"switches": [], "time_ms": {}}
    started = [e for e in events if e.kind is EventKind.CALL_STARTED]
    ended = [e for e in events if e.kind is EventKind.CALL_ENDED]
    at = started[0].t_ms if started else events[0].t_ms
    end = ended[-1].t_ms if ended else events[-1].t_ms
    brain = str(started[0].data.get("mode", "realtime")) if started else "realtime"
    time_ms: dict[str, float] = {}
    switches = []
    for event in (e for e in events if e.kind is EventKind.BRAIN_SWITCHED):
        time_ms[brain] = time_ms.get(brain, 0.0) + event.t_ms - at
        brain, at = str(event.data["to"]), event.t_ms
        switches.append({"at_ms": round(event.t_ms), **event.data})
    time_ms[brain] = time_ms.get(brain, 0.0) + max(0.0, end - at)
    return {"switches": switches, "time_ms": {k: round(v) for k, v in time_ms.items()}}
