"""An interruption planned across state machine, response guard and playback tracker."""

from __future__ import annotations

import pytest

from voxpipe.call.interruption import StopOutputAudio, plan_interruption
from voxpipe.call.playback import AudioReceived, PlaybackAdvanced, PlaybackTracker
from voxpipe.call.response_guard import (
    CancelConfirmed,
    InterruptionSource,
    ResponseGuard,
    ResponseReason,
    ResponseRequest,
    SendResponseCancel,
)
from voxpipe.call.state import CallState, CallStateMachine, CallTrigger, StateChanged

PCM_MS = 48


def speaking_call(
    *, server_auto_cancels: bool = True
) -> tuple[CallStateMachine, ResponseGuard, PlaybackTracker]:
    machine, guard, tracker = (
        CallStateMachine(),
        ResponseGuard(server_auto_cancels=server_auto_cancels),
        PlaybackTracker(),
    )
    machine.handle(CallTrigger.SESSION_READY, 0)
    guard.request_response(ResponseRequest("r1", ResponseReason.USER_TURN))
    machine.handle(CallTrigger.RESPONSE_REQUESTED, 100)
    guard.on_response_created("resp_1")
    tracker.handle(AudioReceived("item_1", 3_000 * PCM_MS))
    machine.handle(CallTrigger.AUDIO_STARTED, 900)
    tracker.handle(PlaybackAdvanced("item_1", 1_200))
    return machine, guard, tracker


@pytest.mark.parametrize(
    "source",
    [InterruptionSource.LOCAL_VAD, InterruptionSource.PROCESSOR, InterruptionSource.APPLICATION],
)
def test_barge_in_stops_cancels_and_truncates_to_heard_audio(source: InterruptionSource) -> None:
    machine, guard, tracker = speaking_call()
    plan = plan_interruption(
        machine=machine, guard=guard, tracker=tracker, source=source, now_ms=2_100, played_ms=1_234
    )
    assert plan.stop == StopOutputAudio("item_1")
    assert plan.cancel == SendResponseCancel("resp_1")
    assert plan.truncation is not None and plan.truncation.audio_end_ms == 1_234
    assert [t.current for t in plan.transitions if isinstance(t, StateChanged)] == [
        CallState.CANCELLING
    ]
    # Late audio of the cancelled response is dropped, and the cancel then lands.
    assert not tracker.handle(AudioReceived("item_1", 500 * PCM_MS))
    assert guard.is_cancelled("resp_1")
    assert guard.on_response_done("resp_1") == [CancelConfirmed("resp_1")]
    machine.handle(CallTrigger.CANCEL_CONFIRMED, 2_300)
    assert machine.state is CallState.LISTENING


@pytest.mark.parametrize(("auto_cancels", "cancel_sent"), [(True, False), (False, True)])
def test_server_vad_barge_in(auto_cancels: bool, cancel_sent: bool) -> None:
    machine, guard, tracker = speaking_call(server_auto_cancels=auto_cancels)
    plan = plan_interruption(
        machine=machine,
        guard=guard,
        tracker=tracker,
        source=InterruptionSource.SERVER_VAD,
        now_ms=2_000,
    )
    assert (plan.cancel is not None) is cancel_sent
    assert plan.truncation is not None and plan.truncation.audio_end_ms == 1_200
    assert machine.state is CallState.CANCELLING


def test_truncation_never_overruns_received_audio() -> None:
    machine, guard, tracker = speaking_call()
    plan = plan_interruption(
        machine=machine,
        guard=guard,
        tracker=tracker,
        source=InterruptionSource.LOCAL_VAD,
        now_ms=5_000,
        played_ms=3_085,  # the output clock overshot the 3000 ms received
    )
    assert plan.truncation is not None
    assert (plan.truncation.audio_end_ms, plan.truncation.played_ms) == (3_000, 3_085)


def test_interrupting_audio_that_outlived_its_response() -> None:
    machine, guard, tracker = speaking_call()
    guard.on_response_done("resp_1")  # generation over, audio still draining
    plan = plan_interruption(
        machine=machine,
        guard=guard,
        tracker=tracker,
        source=InterruptionSource.LOCAL_VAD,
        now_ms=2_500,
        played_ms=2_000,
    )
    assert plan.cancel is None  # nothing active: no response_cancel_not_active error
    assert plan.truncation is not None and plan.truncation.audio_end_ms == 2_000
    assert machine.state is CallState.LISTENING
    assert [t.trigger for t in plan.transitions if isinstance(t, StateChanged)] == [
        CallTrigger.INTERRUPTED,
        CallTrigger.CANCEL_CONFIRMED,
    ]


def test_interrupt_while_listening_is_harmless() -> None:
    machine, guard, tracker = CallStateMachine(), ResponseGuard(), PlaybackTracker()
    machine.handle(CallTrigger.SESSION_READY, 0)
    plan = plan_interruption(
        machine=machine,
        guard=guard,
        tracker=tracker,
        source=InterruptionSource.APPLICATION,
        now_ms=10,
    )
    assert plan.stop == StopOutputAudio(None)
    assert (plan.cancel, plan.truncation, plan.transitions) == (None, None, ())
    assert machine.state is CallState.LISTENING


def test_interrupt_before_any_audio_cancels_without_truncating() -> None:
    machine, guard, tracker = CallStateMachine(), ResponseGuard(), PlaybackTracker()
    machine.handle(CallTrigger.SESSION_READY, 0)
    guard.request_response(ResponseRequest("r1", ResponseReason.USER_TURN))
    machine.handle(CallTrigger.RESPONSE_REQUESTED, 10)
    plan = plan_interruption(
        machine=machine,
        guard=guard,
        tracker=tracker,
        source=InterruptionSource.LOCAL_VAD,
        now_ms=20,
        played_ms=0,
    )
    assert plan.cancel == SendResponseCancel(None)
    assert plan.truncation is None
    assert machine.state is CallState.CANCELLING
