"""The active-response guard and the call state machine, against the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipecat.services.llm_service import FunctionCallParams
from realtime_calls import compose, realtime_call

from voxpipe.call import CallState, StateChanged, TransitionRejected
from voxpipe.processors.realtime import (
    ProviderErrorSeen,
    ResponseCreated,
    ResponseRequested,
)
from voxpipe.transports.realtime_server import SendError


async def test_a_tool_call_walks_the_states_and_the_reply_follows(
    make_speech: Any, tmp_path: Path
) -> None:
    calls: list[str] = []

    async def get_opening_hours(params: FunctionCallParams, day: str) -> None:
        """Get the pharmacy's opening hours on a given day.

        Args:
            day: The day of the week.
        """
        calls.append(day)
        await params.result_callback({"day": day, "hours": "9 am to 1 pm"})

    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "When do you open on Saturday?", 4000], recording)
    script = [
        {"function_call": {"name": "get_opening_hours", "arguments": {"day": "Saturday"}}},
        "We open at nine on Saturday.",
    ]
    async with realtime_call(recording, script=script, tools=[get_opening_hours]) as call:
        await call.wait_event(ResponseCreated, 2)
        await call.wait_for(
            lambda: (
                call.service.machine.state is CallState.LISTENING
                and len(call.transport.written) > 0
            ),
            15,
        )

    assert calls == ["Saturday"]
    moves = [(e.previous, e.current) for e in call.of(StateChanged)]
    assert moves == [
        (CallState.IDLE, CallState.LISTENING),
        (CallState.LISTENING, CallState.THINKING),
        (CallState.THINKING, CallState.CALLING_TOOL),
        (CallState.CALLING_TOOL, CallState.THINKING),
        (CallState.THINKING, CallState.SPEAKING),
        (CallState.SPEAKING, CallState.PLAYING_OUT),
        (CallState.PLAYING_OUT, CallState.LISTENING),
    ]
    # The reply was heard in full before the call went back to listening.
    heard = sum(w.duration_ms for w in call.transport.written)
    assert heard > 1000
    listening_at = call.of(StateChanged)[-1].at_ms
    last = call.transport.written[-1]
    # The output pads the reply's last 20 ms chunk with silence (pipecat's
    # flush): the reply ends where its last received millisecond played, which
    # may be inside that chunk (fc7 under load: listening at 4403, the padded
    # chunk ran 4392.7-4412.7). The ledger counts whole ms and calls a reply
    # played out 1 ms short of its end; the state's time is a whole ms too.
    reply = [w for w in call.transport.written if w.utterance == last.utterance]
    received = call.service.call.ledger.received_ms(last.utterance)
    before_last = sum(w.duration_ms for w in reply[:-1])
    assert before_last < received <= before_last + last.duration_ms
    assert listening_at >= last.at_ms + (received - before_last) - 2
    assert not call.of(TransitionRejected)
    assert not call.recorder.errors


async def test_a_response_asked_while_one_is_active_waits_its_turn(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Tell me about the pharmacy.", 6000], recording)
    script = ["We are a small pharmacy on the corner of Market Street and Elm.", "Anything else?"]
    async with realtime_call(recording, script=script) as call:
        await call.wait_for(lambda: call.service.machine.state is CallState.SPEAKING)
        await call.service.request_response()  # the application wants one more
        await call.wait_event(ResponseCreated, 2)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 15)

    requested = call.of(ResponseRequested)
    assert requested[0].queued and not requested[1].queued  # queued, then sent
    assert not [e for e in call.of(ProviderErrorSeen) if e.code]  # no active-response error
    assert not call.recorder.errors


async def test_active_response_and_cancel_errors_are_absorbed(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Hello there.", 3000, "Are you still there?", 3000], recording)
    async with realtime_call(recording, script=["Hello, how can I help?"]) as call:
        await call.wait_event(ResponseCreated)
        for code in ("conversation_already_has_active_response", "response_cancel_not_active"):
            call.server.arm(SendError(error_type="invalid_request_error", code=code, message=code))
        await call.wait_event(ResponseCreated, 2, timeout_s=20)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 15)

    seen = call.of(ProviderErrorSeen)
    assert {e.code for e in seen} >= {
        "conversation_already_has_active_response",
        "response_cancel_not_active",
    }
    assert all(e.handled for e in seen)
    assert not call.recorder.errors  # nothing reached the pipeline as an error
    assert not call.service.failed
