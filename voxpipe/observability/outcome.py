"""How a call ended, and why when it did not end well: the report's ``outcome`` section.

Read from the call's timeline alone (``state_changed``, ``reconnect``,
``brain_switched`` and fatal ``error`` events), so a report rebuilt from
``timeline.jsonl`` says the same, and ``voxpipe call`` prints the same reason.

A call can end while its realtime brain is still reconnecting: the caller's
recording ran out (or the caller hung up) before the retry budget was spent.
Nothing fatal happened, so before this the call looked like one that merely
had no turns (``voxpipe call`` exited 1 and said nothing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from voxpipe.timeline import EventKind, Timeline, TimelineEvent


class BrainAtEnd(enum.Enum):
    """Where the call's brain stood when the call ended.

    Not :class:`voxpipe.pipelines.live_call.CallEnd` (who ended a live call: hung up,
    input ended, ...): a caller who hangs up mid-reconnect is both.
    """

    COMPLETED = "completed"  # the brain was there when it ended
    FAILED = "failed"  # a fatal error ended it (a refused key, the retry budget spent)
    BEFORE_BRAIN_CONNECTED = "before_brain_connected"  # no session was ever ready
    WHILE_BRAIN_RECONNECTING = "while_brain_reconnecting"  # a session was lost, none back yet


@dataclass(frozen=True)
class CallOutcome:
    """How the call ended; ``reason`` in words unless it completed."""

    end: BrainAtEnd
    reason: str | None = None
    failed_connects: int = 0  # connection attempts that failed in the outage it ended in

    @property
    def failed(self) -> bool:
        """The call did not end with its brain there."""
        return self.end is not BrainAtEnd.COMPLETED

    def as_dict(self) -> dict[str, Any]:
        return {
            "end": self.end.value,
            "reason": self.reason,
            "failed_connects": self.failed_connects,
        }


def call_outcome(timeline: Timeline) -> CallOutcome:
    """How the call in ``timeline`` ended (see :class:`BrainAtEnd`)."""
    events = sorted(timeline.events, key=lambda e: e.t_ms)
    fatal = [e for e in events if e.kind is EventKind.ERROR and e.data.get("fatal")]
    if fatal:
        return CallOutcome(BrainAtEnd.FAILED, str(fatal[0].data.get("error")))
    connected, failures, last_error = False, 0, ""
    for event in events:
        if _session_ready(event) or event.kind is EventKind.BRAIN_SWITCHED:
            connected, failures = connected or _session_ready(event), 0
        elif event.kind is EventKind.RECONNECT and event.data.get("phase") == "reconnecting":
            failures, last_error = failures + 1, str(event.data.get("reason") or "unknown")
    if failures == 0:
        return CallOutcome(BrainAtEnd.COMPLETED)
    if not connected:
        attempts = "1 connection attempt" if failures == 1 else f"{failures} connection attempts"
        return CallOutcome(
            BrainAtEnd.BEFORE_BRAIN_CONNECTED,
            f"the call ended before the brain connected: {attempts} failed"
            f" (last error: {last_error})",
            failures,
        )
    reconnects = failures - 1  # the first failure is the session being lost
    plural = "" if reconnects == 1 else "s"
    return CallOutcome(
        BrainAtEnd.WHILE_BRAIN_RECONNECTING,
        f"the call ended while the brain was reconnecting: the session was lost and"
        f" {reconnects} reconnect{plural} failed (last error: {last_error})",
        failures,
    )


def _session_ready(event: TimelineEvent) -> bool:
    return event.kind is EventKind.STATE_CHANGED and event.data.get("trigger") == "session_ready"
