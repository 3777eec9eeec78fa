"""What the chained slots' fallback did in one call: the report's ``slots`` section.

Read from the call's timeline alone (``slot_handoff`` and ``slot_failed``
events), so a report rebuilt from ``timeline.jsonl`` says the same.
"""

from __future__ import annotations

from typing import Any

from voxpipe.timeline import EventKind, Timeline


def slot_section(timeline: Timeline) -> dict[str, Any]:
    """Handoffs (when, slot, from, to, why), requests no engine served, and counts per slot."""
    events = sorted(timeline.events, key=lambda e: e.t_ms)
    handoffs = [
        {"at_ms": round(e.t_ms), **e.data} for e in events if e.kind is EventKind.SLOT_HANDOFF
    ]
    failures = [
        {"at_ms": round(e.t_ms), **e.data} for e in events if e.kind is EventKind.SLOT_FAILED
    ]
    counts: dict[str, dict[str, int]] = {}
    for kind, entries in (("handoffs", handoffs), ("failures", failures)):
        for entry in entries:
            slot = counts.setdefault(str(entry["slot"]), {"handoffs": 0, "failures": 0})
            slot[kind] += 1
    return {"handoffs": handoffs, "failures": failures, "per_slot": counts}
