"""Who had the caller, and each handoff between agents: the report's ``agents`` section.

Read from the call's timeline alone (``handoff`` events: ``started`` when a
transfer tool was called, ``applied`` when the next agent's instructions and
tools were in force, ``refused`` for a transfer the agent does not have), so
a report rebuilt from ``timeline.jsonl`` says the same.
"""

from __future__ import annotations

from typing import Any

from voxpipe.timeline import EventKind, Timeline

_STARTED = "started"
_APPLIED = "applied"
_REFUSED = "refused"


def agent_section(timeline: Timeline) -> dict[str, Any]:
    """Handoffs (when, from, to, why, context carried, wait) and refused transfers, in order.

    An ``applied`` event completes the ``started`` one before it with the same
    agents; a handoff never applied (the call ended, or the session refused
    the update) keeps ``applied_at_ms`` ``None``.
    """
    events = sorted(timeline.of(EventKind.HANDOFF), key=lambda e: e.t_ms)
    handoffs: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        phase = data.get("phase")
        if phase == _STARTED:
            handoffs.append(
                {
                    "at_ms": round(event.t_ms),
                    "from": data.get("from"),
                    "to": data.get("to"),
                    "reason": data.get("reason"),
                    "kept_turns": data.get("kept_turns"),
                    "dropped_items": data.get("dropped_items"),
                    "summary_chars": data.get("summary_chars"),
                    "applied_at_ms": None,
                    "wait_ms": None,
                    "barged_in": None,
                }
            )
        elif phase == _APPLIED:
            pending = next(
                (
                    h
                    for h in reversed(handoffs)
                    if h["applied_at_ms"] is None
                    and (h["from"], h["to"]) == (data.get("from"), data.get("to"))
                ),
                None,
            )
            if pending is None:  # an applied handoff whose start is not in the timeline
                pending = {
                    "at_ms": round(event.t_ms),
                    "from": data.get("from"),
                    "to": data.get("to"),
                    "reason": None,
                    "kept_turns": None,
                    "dropped_items": None,
                    "summary_chars": None,
                }
                handoffs.append(pending)
            pending.update(
                applied_at_ms=round(event.t_ms),
                wait_ms=data.get("wait_ms"),
                barged_in=data.get("barged_in"),
            )
        elif phase == _REFUSED:
            refused.append(
                {"at_ms": round(event.t_ms), "agent": data.get("from"), "tool": data.get("tool")}
            )
    return {"handoffs": handoffs, "refused_transfers": refused}
