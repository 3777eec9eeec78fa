"""The realtime service's call events as Prometheus counters.

The service publishes every call event as a ``RealtimeCallEventFrame``; this
observer counts the ones the alert rules watch:

- an interruption is counted when the call leaves ``CANCELLING``; it
  *recovered* if the call went back to the conversation, and failed if it
  went to recovery, a reconnect or failure instead (the cancel did not settle);
  one that cut a finished reply's last audio (``PLAYING_OUT`` to
  ``LISTENING``) had nothing to cancel and counts as recovered;
- every reconnect attempt, by failure class (a burst of them is an alert);
- every brain switch, by direction and reason (a call left the realtime brain);
- token rotations and failed rotations; rollovers;
- provider errors by type, and the error that ended a call (errors a core
  absorbed as part of the protocol, such as a cancel racing the response's
  end, are not errors of the call and are not counted).

Guardrail trips are counted by the guardrail tap itself (give it the metrics).
"""

from __future__ import annotations

from typing import ClassVar

from pipecat.frames.frames import Frame
from pipecat.observers.base_observer import FramePushed

from voxpipe.call import CallState, CallTrigger, StateChanged
from voxpipe.call.events import (
    BrainSwitched,
    CallEvent,
    CallFailed,
    ProviderErrorSeen,
    Reconnecting,
    RolledOver,
    TokenRotated,
)
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.inline import InlineObserver

# Leaving CANCELLING for one of these means the interruption did not settle.
_UNSETTLED = frozenset({CallState.RECOVERING, CallState.RECONNECTING, CallState.FAILED})


class CallEventMetrics(InlineObserver):
    """Counts interruptions, recoveries, reconnects, rotations, rollovers and errors."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (RealtimeCallEventFrame,)

    def __init__(self, metrics: VoxpipeMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def observe(self, data: FramePushed, first: bool) -> None:
        if isinstance(data.frame, RealtimeCallEventFrame):
            self.record(data.frame.event)

    def record(self, event: CallEvent) -> None:
        """Count one call event (events the alerts do not watch are ignored)."""
        m = self.metrics
        match event:
            case StateChanged(previous=CallState.CANCELLING, current=current):
                m.record_interruption(recovered=current not in _UNSETTLED)
            case StateChanged(previous=CallState.PLAYING_OUT, trigger=CallTrigger.INTERRUPTED):
                m.record_interruption(recovered=True)
            case Reconnecting(failure_class=failure_class):
                m.record_reconnect(failure_class)
            case TokenRotated(failed=failed):
                m.record_token_rotation(ok=not failed)
            case RolledOver():
                m.record_rollover()
            case ProviderErrorSeen(error_type=error_type, code=code, handled=False):
                m.record_error(error_type or code or "unknown")
            case CallFailed(error=error):
                m.record_error(type(error).__name__)
            case BrainSwitched(previous=previous, current=current, reason=reason):
                m.record_brain_switch(previous, current, reason)
