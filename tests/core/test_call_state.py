"""Call state machine: the transition table, strict and production modes, timers."""

from __future__ import annotations

import random

import pytest

from voxpipe.call.state import (
    TERMINAL_STATES,
    TRANSITIONS,
    CallState,
    CallStateMachine,
    CallTrigger,
    StateChanged,
    StateTimeouts,
    TransitionRejected,
)
from voxpipe.errors import IllegalTransitionError, LocalProtocolError

S = CallState
T = CallTrigger


def machine_in(state: CallState, *, strict: bool = True, now_ms: int = 0) -> CallStateMachine:
    """Walk a machine to ``state`` through legal moves only."""
    paths: dict[CallState, list[CallTrigger]] = {
        S.IDLE: [],
        S.LISTENING: [T.SESSION_READY],
        S.THINKING: [T.SESSION_READY, T.RESPONSE_REQUESTED],
        S.SPEAKING: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.AUDIO_STARTED],
        S.PLAYING_OUT: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.AUDIO_STARTED, T.RESPONSE_DONE],
        S.CALLING_TOOL: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.TOOL_CALL_REQUESTED],
        S.CANCELLING: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.AUDIO_STARTED, T.INTERRUPTED],
        S.RECOVERING: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.RESPONSE_FAILED],
        S.RECONNECTING: [T.SESSION_READY, T.CONNECTION_LOST],
        S.ROLLING_OVER: [T.SESSION_READY, T.ROLLOVER_STARTED],
        S.BRAIN_SWITCHING: [T.SESSION_READY, T.BRAIN_SWITCH_STARTED],
        S.ON_FALLBACK: [T.SESSION_READY, T.BRAIN_SWITCH_STARTED, T.BRAIN_SWITCHED],
        S.HANDING_OFF: [T.SESSION_READY, T.RESPONSE_REQUESTED, T.HANDOFF_STARTED],
        S.ENDED: [T.HUNG_UP],
        S.FAILED: [T.FATAL_ERROR],
    }
    m = CallStateMachine(strict=strict, now_ms=now_ms)
    for trigger in paths[state]:
        m.handle(trigger, now_ms)
    assert m.state is state
    m.drain_events()
    return m


@pytest.mark.parametrize(
    ("start", "trigger", "end"),
    [
        (S.IDLE, T.SESSION_READY, S.LISTENING),
        (S.LISTENING, T.RESPONSE_REQUESTED, S.THINKING),
        (S.THINKING, T.AUDIO_STARTED, S.SPEAKING),
        (S.SPEAKING, T.RESPONSE_DONE, S.PLAYING_OUT),
        (S.PLAYING_OUT, T.PLAYED_OUT, S.LISTENING),
        (S.PLAYING_OUT, T.INTERRUPTED, S.LISTENING),
        (S.PLAYING_OUT, T.RESPONSE_REQUESTED, S.THINKING),
        (S.THINKING, T.HANDOFF_STARTED, S.HANDING_OFF),
        (S.SPEAKING, T.HANDOFF_STARTED, S.HANDING_OFF),
        (S.HANDING_OFF, T.HANDOFF_APPLIED, S.LISTENING),
        (S.HANDING_OFF, T.INTERRUPTED, S.HANDING_OFF),
        (S.HANDING_OFF, T.TIMED_OUT, S.RECOVERING),
        (S.HANDING_OFF, T.CONNECTION_LOST, S.RECONNECTING),
        (S.IDLE, T.CONNECTION_LOST, S.RECONNECTING),
        (S.SPEAKING, T.INTERRUPTED, S.CANCELLING),
        (S.THINKING, T.INTERRUPTED, S.CANCELLING),
        (S.CANCELLING, T.CANCEL_CONFIRMED, S.LISTENING),
        (S.CANCELLING, T.RESPONSE_DONE, S.LISTENING),
        (S.THINKING, T.TIMED_OUT, S.RECOVERING),
        (S.THINKING, T.RESPONSE_FAILED, S.RECOVERING),
        (S.RECOVERING, T.RECOVERED, S.LISTENING),
        (S.THINKING, T.TOOL_CALL_REQUESTED, S.CALLING_TOOL),
        (S.CALLING_TOOL, T.TOOL_RESULT_SENT, S.THINKING),
        (S.SPEAKING, T.CONNECTION_LOST, S.RECONNECTING),
        (S.RECONNECTING, T.CONNECTION_LOST, S.RECONNECTING),
        (S.RECONNECTING, T.SESSION_READY, S.LISTENING),
        (S.LISTENING, T.ROLLOVER_STARTED, S.ROLLING_OVER),
        (S.ROLLING_OVER, T.SESSION_READY, S.LISTENING),
        (S.ROLLING_OVER, T.TIMED_OUT, S.RECONNECTING),
        (S.SPEAKING, T.HUNG_UP, S.ENDED),
        (S.RECONNECTING, T.FATAL_ERROR, S.FAILED),
        (S.IDLE, T.FATAL_ERROR, S.FAILED),
    ],
)
def test_documented_moves(start: CallState, trigger: CallTrigger, end: CallState) -> None:
    m = machine_in(start)
    event = m.handle(trigger, 42)
    assert event == StateChanged(start, end, trigger, 42, None, None)
    assert m.state is end
    assert m.drain_events() == [event]


@pytest.mark.parametrize(("pair", "target"), sorted(TRANSITIONS.items(), key=str))
def test_every_table_entry_is_reachable_and_applies(
    pair: tuple[CallState, CallTrigger], target: CallState
) -> None:
    start, trigger = pair
    m = machine_in(start)
    assert m.can(trigger)
    m.handle(trigger, 1)
    assert m.state is target


@pytest.mark.parametrize(
    ("start", "trigger"),
    [
        (S.IDLE, T.RESPONSE_REQUESTED),  # no session yet
        (S.LISTENING, T.AUDIO_STARTED),  # audio without a response
        (S.LISTENING, T.INTERRUPTED),  # nothing to interrupt
        (S.LISTENING, T.PLAYED_OUT),  # nothing was playing
        (S.PLAYING_OUT, T.ROLLOVER_STARTED),  # the caller is still hearing the reply
        (S.SPEAKING, T.RESPONSE_REQUESTED),  # the response guard must queue instead
        (S.THINKING, T.ROLLOVER_STARTED),  # never roll over mid-response
        (S.CANCELLING, T.AUDIO_STARTED),  # no audio after an interruption
        (S.RECOVERING, T.RESPONSE_REQUESTED),
        (S.LISTENING, T.HANDOFF_STARTED),  # a transfer comes inside a response
        (S.HANDING_OFF, T.RESPONSE_REQUESTED),  # the new agent speaks once its session.updated
        (S.ENDED, T.SESSION_READY),
        (S.FAILED, T.HUNG_UP),
    ],
)
def test_illegal_moves_raise_in_strict_mode(start: CallState, trigger: CallTrigger) -> None:
    m = machine_in(start)
    assert not m.can(trigger)
    with pytest.raises(IllegalTransitionError) as info:
        m.handle(trigger, 5)
    assert isinstance(info.value, LocalProtocolError)
    assert trigger.name in str(info.value) and start.name in str(info.value)
    assert m.state is start


def test_production_mode_reports_and_stays(caplog: pytest.LogCaptureFixture) -> None:
    m = machine_in(S.LISTENING, strict=False)
    result = m.handle(T.AUDIO_STARTED, 9)
    assert result == TransitionRejected(S.LISTENING, T.AUDIO_STARTED, 9)
    assert m.state is S.LISTENING
    assert m.drain_events() == [result]
    assert "AUDIO_STARTED is not allowed in LISTENING" in caplog.text


@pytest.mark.parametrize("terminal", [S.ENDED, S.FAILED])
@pytest.mark.parametrize("trigger", list(CallTrigger))
def test_terminal_states_accept_nothing(terminal: CallState, trigger: CallTrigger) -> None:
    m = machine_in(terminal, strict=False)
    assert m.is_terminal
    assert isinstance(m.handle(trigger, 1), TransitionRejected)


def test_every_state_can_end_and_fail() -> None:
    for state in CallState:
        if state in TERMINAL_STATES:
            continue
        assert TRANSITIONS[(state, T.HUNG_UP)] is S.ENDED
        assert TRANSITIONS[(state, T.FATAL_ERROR)] is S.FAILED


def test_a_call_with_a_barge_in_a_tool_and_a_reconnect() -> None:
    m = CallStateMachine()
    script = [
        (T.SESSION_READY, S.LISTENING),
        (T.RESPONSE_REQUESTED, S.THINKING),
        (T.AUDIO_STARTED, S.SPEAKING),
        (T.INTERRUPTED, S.CANCELLING),
        (T.CANCEL_CONFIRMED, S.LISTENING),
        (T.RESPONSE_REQUESTED, S.THINKING),
        (T.TOOL_CALL_REQUESTED, S.CALLING_TOOL),
        (T.TOOL_RESULT_SENT, S.THINKING),
        (T.AUDIO_STARTED, S.SPEAKING),
        (T.CONNECTION_LOST, S.RECONNECTING),
        (T.SESSION_READY, S.LISTENING),
        (T.HUNG_UP, S.ENDED),
    ]
    for i, (trigger, expected) in enumerate(script):
        m.handle(trigger, i * 100)
        assert m.state is expected
    events = m.drain_events()
    assert [e.current for e in events if isinstance(e, StateChanged)] == [s for _, s in script]
    assert [e.at_ms for e in events] == [i * 100 for i in range(len(script))]


@pytest.mark.parametrize(
    ("state", "limit_ms", "expected"),
    [
        (S.THINKING, 15_000, S.RECOVERING),
        (S.CANCELLING, 3_000, S.RECOVERING),
        (S.CALLING_TOOL, 30_000, S.RECOVERING),
        (S.ROLLING_OVER, 10_000, S.RECONNECTING),
    ],
)
def test_tick_times_out_stuck_states(state: CallState, limit_ms: int, expected: CallState) -> None:
    m = machine_in(state, now_ms=1_000)
    assert m.next_deadline_ms() == 1_000 + limit_ms
    assert m.tick(1_000 + limit_ms - 1) is None
    event = m.tick(1_000 + limit_ms)
    assert event is not None and event.trigger is T.TIMED_OUT and event.current is expected


@pytest.mark.parametrize("state", [S.IDLE, S.LISTENING, S.SPEAKING, S.RECONNECTING, S.ENDED])
def test_untimed_states_never_time_out(state: CallState) -> None:
    m = machine_in(state)
    assert m.next_deadline_ms() is None
    assert m.tick(10**9) is None


def test_timeouts_are_configurable() -> None:
    m = CallStateMachine(timeouts=StateTimeouts(thinking_ms=None))
    m.handle(T.SESSION_READY, 0)
    m.handle(T.RESPONSE_REQUESTED, 0)
    assert m.tick(10**9) is None


def test_context_survives_reconnect_and_response_id_is_cleared() -> None:
    m = CallStateMachine()
    m.note_session("sess_1", "conv_1")
    m.handle(T.SESSION_READY, 0)
    m.handle(T.RESPONSE_REQUESTED, 10)
    m.note_response("resp_1")
    m.note_user_audio(7)
    m.note_user_audio(3)  # late chunk must not move the sequence back
    audio = m.handle(T.AUDIO_STARTED, 20)
    assert isinstance(audio, StateChanged) and audio.response_id == "resp_1"
    m.handle(T.CONNECTION_LOST, 30)
    ctx = m.context
    assert (ctx.session_id, ctx.conversation_id, ctx.response_id) == ("sess_1", "conv_1", None)
    assert ctx.last_user_audio_seq == 7
    m.note_session("sess_2")
    ready = m.handle(T.SESSION_READY, 40)
    assert isinstance(ready, StateChanged) and ready.session_id == "sess_2"


@pytest.mark.parametrize("seed", range(10))
def test_random_provider_noise_never_breaks_a_production_machine(seed: int) -> None:
    """Late, duplicate or out-of-order events are reported, never raised."""
    rng = random.Random(seed)
    m = CallStateMachine(strict=False)
    for step in range(500):
        before = m.state
        result = m.handle(rng.choice(list(CallTrigger)), step)
        if isinstance(result, StateChanged):
            assert TRANSITIONS[(before, result.trigger)] is result.current is m.state
        else:
            assert m.state is before
        if before in (S.ENDED, S.FAILED):
            assert m.state is before  # terminal states absorb everything
