"""The BRAIN_SWITCHING phase: the realtime call lets go of the call for the chained brain.

Scripts of ``tests/support/call_script.py``:
each step an input at a time and the commands that come out.
"""

from __future__ import annotations

import pytest
from call_script import (
    CONNECT,
    SERVER_TURN,
    SPEAKING,
    audio,
    describe,
    done,
    error,
    event_of,
    interrupt,
    new_call,
    played,
    run,
    transcribed,
    want,
    words,
)

from voxpipe.call import BackoffConfig, CallState, CallStateMachine, CallTrigger, InterruptionSource
from voxpipe.call.commands import EndCall, Publish
from voxpipe.call.events import BrainGaveUp, CallFailed
from voxpipe.call.recovery import FailureClass, NetworkFailed
from voxpipe.call.rollover import Role
from voxpipe.call.state import TRANSITIONS
from voxpipe.errors import FatalProviderError, RetryBudgetExhaustedError

S, T = CallState, CallTrigger


# -- the table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        S.IDLE,
        S.LISTENING,
        S.THINKING,
        S.SPEAKING,
        S.PLAYING_OUT,
        S.CALLING_TOOL,
        S.CANCELLING,
        S.RECOVERING,
        S.RECONNECTING,
        S.ROLLING_OVER,
        S.ON_FALLBACK,
    ],
)
def test_a_switch_can_start_from_any_state_the_call_is_alive_in(state: CallState) -> None:
    assert TRANSITIONS[(state, T.BRAIN_SWITCH_STARTED)] is S.BRAIN_SWITCHING


def test_the_switch_and_the_way_back_as_moves() -> None:
    m = CallStateMachine()
    for trigger, expected in [
        (T.SESSION_READY, S.LISTENING),
        (T.RESPONSE_REQUESTED, S.THINKING),
        (T.BRAIN_SWITCH_STARTED, S.BRAIN_SWITCHING),
        (T.INTERRUPTED, S.BRAIN_SWITCHING),  # a barge-in mid-switch: nothing to cancel
        (T.BRAIN_SWITCHED, S.ON_FALLBACK),
        (T.BRAIN_SWITCH_STARTED, S.BRAIN_SWITCHING),  # switching back
        (T.CONNECTION_LOST, S.ON_FALLBACK),  # the session did not come: stay
        (T.BRAIN_SWITCH_STARTED, S.BRAIN_SWITCHING),
        (T.SESSION_READY, S.LISTENING),  # back on realtime
        (T.HUNG_UP, S.ENDED),
    ]:
        m.handle(trigger, 0)
        assert m.state is expected


@pytest.mark.parametrize(
    "trigger", [T.RESPONSE_REQUESTED, T.AUDIO_STARTED, T.RESPONSE_DONE, T.ROLLOVER_STARTED]
)
def test_no_response_starts_while_the_brains_change_hands(trigger: CallTrigger) -> None:
    m = CallStateMachine(strict=False)
    m.handle(T.SESSION_READY, 0)
    m.handle(T.BRAIN_SWITCH_STARTED, 0)
    assert not m.can(trigger)
    m.handle(T.BRAIN_SWITCHED, 0)
    assert not m.can(trigger)


# -- the realtime call lets go ---------------------------------------------------------


def test_a_switch_mid_reply_cancels_it_keeps_the_heard_words_and_owes_the_answer() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    call.server_event(event_of(transcribed("user_1", "When do you open on Saturday?")), 2030)
    call.server_event(
        event_of(words("resp_1", "item_1", "one two three four five six seven eight nine ten")),
        2050,
    )
    run(
        [
            (2100, audio("resp_1", "item_1", 1000), ["state:speaking", "play:item_1+marker+tts"]),
            (2100, played("item_1", 1000), []),
        ],
        call,
    )
    commands = [describe(c) for c in call.switch_away(2400)]  # 300 of 1000 ms heard
    assert commands == [
        "send:response.cancel resp_1",
        "stop",
        "end-response",
        "close",
        "state:brain_switching",
    ]
    seed = call.handover_seed
    assert seed is not None
    assert [(t.role, t.text) for t in seed.verbatim] == [
        (Role.USER, "When do you open on Saturday?"),
        (Role.ASSISTANT, "one two three (interrupted)"),  # never the unheard tail
    ]
    assert call.reask_owed
    # Late events of the closed session change nothing; the cut reply never plays.
    assert [
        describe(c) for c in call.server_event(event_of(audio("resp_1", "item_1", 500)), 2500)
    ] == []
    assert [describe(c) for c in call.handed_over(2600)] == ["state:on_fallback"]


def test_a_barge_in_while_switching_stops_the_output_and_drops_the_reask() -> None:
    call = run([*CONNECT, *SPEAKING])
    call.switch_away(2500)
    assert call.reask_owed
    got = [describe(c) for c in interrupt(InterruptionSource.APPLICATION)(call, 2550)]
    assert got == ["stop", "state:brain_switching"]
    assert not call.reask_owed  # the caller's new turn makes its own response
    # As a frame (the chained VAD's barge-in): the output stops on its own way.
    got = [describe(c) for c in interrupt(InterruptionSource.LOCAL_VAD)(call, 2560)]
    assert got == ["state:brain_switching"]
    assert [describe(c) for c in call.handed_over(2600)] == ["state:on_fallback"]
    # On the fallback, a barge-in is the other brain's business.
    got = [describe(c) for c in interrupt(InterruptionSource.APPLICATION)(call, 2700)]
    assert got == ["ignored:nothing_to_interrupt"]


def test_a_switch_after_an_answer_was_given_owes_nothing() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    call.server_event(event_of(transcribed("user_1", "Hello")), 2030)
    call.server_event(event_of(words("resp_1", "item_1", "Hi there.")), 2050)
    call.server_event(event_of(audio("resp_1", "item_1", 500)), 2100)
    call.server_event(event_of(done("resp_1", "completed", ("item_1",))), 2200)
    call.switch_away(9_000)
    assert not call.reask_owed
    assert call.machine.state is S.BRAIN_SWITCHING
    assert call.handover_seed is not None
    assert [t.text for t in call.handover_seed.verbatim] == ["Hello", "Hi there."]


def test_a_question_with_no_answer_yet_is_owed_one() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    call.server_event(event_of(transcribed("user_1", "Hello?")), 2030)
    call.switch_away(2040)  # the response was created; no audio came
    assert call.reask_owed


def test_with_a_fallback_a_spent_budget_hands_over_instead_of_ending_the_call() -> None:
    backoff = BackoffConfig(initial_ms=10, max_ms=10, jitter=0, max_consecutive=1)
    call = new_call(backoff=backoff, fallback=True)
    run(CONNECT, call)
    assert describe(call.connection_failed(NetworkFailed("down"), 100)[-1]) == "open+10"
    commands = call.connection_failed(NetworkFailed("down"), 200)
    assert not [c for c in commands if isinstance(c, EndCall)]
    gave_up = [c.event for c in commands if isinstance(c, Publish)]
    assert isinstance(gave_up[-1], BrainGaveUp)
    assert isinstance(gave_up[-1].error, RetryBudgetExhaustedError)
    assert not any(isinstance(e, CallFailed) for e in gave_up)
    assert call.machine.state is S.RECONNECTING  # until the switch moves it
    call.switch_away(210)
    assert call.machine.state is S.BRAIN_SWITCHING
    # A reconnect that was still on its way changes nothing now.
    assert [describe(c) for c in call.connection_failed(NetworkFailed("x"), 220)] == [
        "ignored:not_live"
    ]


@pytest.mark.parametrize("fallback", [False, True])
def test_invalid_api_key_ends_the_call_without_a_fallback_and_hands_over_with_one(
    fallback: bool,
) -> None:
    call = new_call(fallback=fallback)
    run(CONNECT, call)
    commands = call.server_event(event_of(error("invalid_api_key")), 100)
    events = [c.event for c in commands if isinstance(c, Publish)]
    if fallback:
        gave_up = [e for e in events if isinstance(e, BrainGaveUp)]
        assert gave_up[0].failure_class is FailureClass.FATAL
        assert isinstance(gave_up[0].error, FatalProviderError)
        assert not [c for c in commands if isinstance(c, EndCall)]
    else:
        assert [e for e in events if isinstance(e, CallFailed)]
        assert [c for c in commands if isinstance(c, EndCall)]
        assert call.machine.state is S.FAILED


def test_on_the_fallback_no_response_is_asked_of_the_realtime_brain() -> None:
    call = run([*CONNECT])
    call.switch_away(100)
    call.handed_over(110)
    got = [describe(c) for c in want()(call, 200)]  # a guardrail's safe line, say
    assert got == ["ignored:not_live"]
    assert call.machine.state is S.ON_FALLBACK


def test_a_reply_lost_with_its_socket_is_owed_even_when_some_of_it_was_heard() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    call.server_event(event_of(transcribed("user_1", "What is the capital of Italy?")), 2030)
    call.server_event(event_of(words("resp_1", "item_1", "one two three four five six")), 2050)
    run(
        [
            (2100, audio("resp_1", "item_1", 1000), ["state:speaking", "play:item_1+marker+tts"]),
            (2100, played("item_1", 1000), []),
        ],
        call,
    )
    call.connection_failed(NetworkFailed("socket closed 1011"), 2600)
    assert call.machine.state is S.RECONNECTING
    # The reconnect was refused: the budget is spent. The output played on until the
    # switch stopped it: 800 of 1000 ms, five words of six ("five", at 704-852 ms by
    # its letters, was past its middle; the word count rounded down once lost it).
    call.switch_away(2900)
    assert call.reask_owed
    assert call.handover_seed is not None
    assert [t.text for t in call.handover_seed.verbatim] == [
        "What is the capital of Italy?",
        "one two three four five (interrupted)",
    ]
