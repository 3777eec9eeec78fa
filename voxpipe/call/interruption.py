"""One interruption, planned across the cores, in the order it must happen.

Any interruption (server or local VAD barge-in, a guardrail, the
application) must: stop output audio at once, cancel the active response
(server VAD on or off, as the guard decides), and truncate the assistant
item to what the caller heard. :func:`plan_interruption` asks the state
machine, the response guard and the playback tracker, and returns the
commands in that order, so a driver cannot get the order wrong.

Stop comes first so that the played position is final when the truncate is
computed, and no frame of the cancelled response reaches the caller.
"""

from __future__ import annotations

import dataclasses

from voxpipe.call.playback import PlaybackAdvanced, PlaybackTracker, TruncationPlanned
from voxpipe.call.response_guard import (
    GuardOutput,
    InterruptionSource,
    ResponseGuard,
    SendResponseCancel,
)
from voxpipe.call.state import CallStateMachine, CallTrigger, TransitionResult


@dataclasses.dataclass(frozen=True)
class StopOutputAudio:
    """Command: flush the output transport's queue now (``item_id`` if known)."""

    item_id: str | None


@dataclasses.dataclass(frozen=True)
class InterruptionPlan:
    """What one interruption does, for the driver to carry out and publish."""

    source: InterruptionSource
    at_ms: int
    stop: StopOutputAudio
    guard_outputs: tuple[GuardOutput, ...]
    truncation: TruncationPlanned | None
    transitions: tuple[TransitionResult, ...]

    @property
    def cancel(self) -> SendResponseCancel | None:
        """The ``response.cancel`` to send, if one is needed."""
        return next((o for o in self.guard_outputs if isinstance(o, SendResponseCancel)), None)


def plan_interruption(
    *,
    machine: CallStateMachine,
    guard: ResponseGuard,
    tracker: PlaybackTracker,
    source: InterruptionSource,
    now_ms: int,
    item_id: str | None = None,
    played_ms: int | None = None,
) -> InterruptionPlan:
    """Plan an interruption at ``now_ms``.

    ``item_id`` is the assistant item being played (default: the latest one
    the tracker saw); ``played_ms`` is the output clock's final position for
    it, read after the output was stopped, when the driver has it.
    """
    item_id = item_id or tracker.latest_item()
    stop = StopOutputAudio(item_id)
    truncation = None
    if item_id is not None and tracker.has_item(item_id):
        if played_ms is not None:
            tracker.handle(PlaybackAdvanced(item_id, played_ms))
        truncation = tracker.plan_truncation(item_id)
    guard_outputs = tuple(guard.on_interruption(source))
    return InterruptionPlan(
        source, now_ms, stop, guard_outputs, truncation, _transitions(machine, guard, now_ms)
    )


def _transitions(
    machine: CallStateMachine, guard: ResponseGuard, now_ms: int
) -> tuple[TransitionResult, ...]:
    if not machine.can(CallTrigger.INTERRUPTED):
        return ()  # nothing to interrupt (listening, already cancelling): not an error
    moved = machine.handle(CallTrigger.INTERRUPTED, now_ms)
    if guard.response_active:
        return (moved,)  # CANCEL_CONFIRMED follows the guard's CancelConfirmed
    # The response had already finished (its audio was still draining): there
    # is nothing to wait for, so the cancel is confirmed at once.
    return (moved, machine.handle(CallTrigger.CANCEL_CONFIRMED, now_ms))
