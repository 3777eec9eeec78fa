"""RealtimeCall, the client core, as protocol scripts: responses, barge-ins, tools, turns.

Each scenario is a script of ``tests/support/call_script.py`` (its docstring
says how commands are written): an input at a time and the commands it must
give. Reconnects, secrets, rate limits and rollover are in
``test_call_realtime_recovery.py``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from call_script import (
    CONNECT,
    CUT_AT_1200,
    PCM_MS,
    SERVER_TURN,
    SPEAKING,
    Step,
    audio,
    caller_audio,
    committed,
    created,
    cut_reported,
    describe,
    done,
    error,
    event_of,
    function_call,
    interrupt,
    local_turn_ended,
    new_call,
    opened,
    output_stopped,
    played,
    run,
    session_created,
    session_updated,
    speech_started,
    speech_stopped,
    tick,
    want,
    words,
)

from voxpipe.call import (
    CallConfig,
    CallState,
    CallTrigger,
    InterruptionSource,
    RealtimeCall,
    ResponseReason,
    TransitionRejected,
    TurnDetection,
)
from voxpipe.call.commands import (
    Command,
    CreateResponse,
    Publish,
)
from voxpipe.call.events import (
    InterruptionHandled,
    ItemTruncated,
)
from voxpipe.errors import IllegalTransitionError

SCENARIOS: dict[str, list[Step]] = {
    "a server-VAD turn is answered, heard, and the call listens again": [
        *CONNECT,
        *SPEAKING,
        (
            2200,
            words("resp_1", "item_1", "We open at nine."),
            ["pipecat:response.output_audio_transcript.delta"],
        ),
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (4000, tick(), []),  # 1900 of 3000 ms heard
        (5100, tick(), ["state:listening"]),  # the last audio has been heard
    ],
    "barge-in while speaking: stop, cancel, truncate at what was heard": [
        *CONNECT,
        *SPEAKING,
        (3300, speech_started(), ["caller-speaking", "stop", *CUT_AT_1200]),
        (3310, audio("resp_1", "item_1", 100), []),  # late audio of the cut response: dropped
        (3320, words("resp_1", "item_1", "and on Sunday"), []),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",), reason="turn_detected"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "one barge-in reported twice (server VAD, then the aggregator) cuts once": [
        *CONNECT,
        *SPEAKING,
        (3300, speech_started(), ["caller-speaking", "stop", *CUT_AT_1200]),
        (3305, interrupt(InterruptionSource.SERVER_VAD), ["ignored:duplicate_interruption"]),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
        (3405, interrupt(InterruptionSource.SERVER_VAD), ["ignored:duplicate_interruption"]),
    ],
    "barge-in while thinking, before response.created: cancel now and again on create": [
        *CONNECT,
        (1000, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            1100,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:response.cancel None",
                "event:InterruptionHandled",
                "state:cancelling",
                "end-response",
            ],
        ),
        (
            1200,
            created("resp_1"),
            [
                "ignored:cancelled_on_create",
                "event:ResponseCreated",
                "send:response.cancel resp_1",
                "pipecat:response.created",
            ],
        ),
        (1210, audio("resp_1", "item_1", 100), []),  # never played
        (
            1300,
            done("resp_1", "cancelled"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "barge-in while a tool runs cancels the response and never runs a later call": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (
            2200,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:response.cancel resp_1",
                "event:InterruptionHandled",
                "state:cancelling",
                "end-response",
            ],
        ),
        (2210, function_call("resp_1", "other"), []),  # the cut response's call is never run
        (
            2300,
            done("resp_1", "cancelled"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "a tool call: the result is answered in a new response, the reply follows": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2150, done("resp_1"), ["pipecat:response.done", "ignored:tool_pending"]),
        (2400, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            2450,
            created("resp_2"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (2500, audio("resp_2", "item_2", 500), ["state:speaking", "play:item_2+marker+tts"]),
    ],
    "a tool result that comes before response.done waits for it": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2120, want(), ["event:ResponseRequested"]),  # queued behind resp_1
        (
            2150,
            done("resp_1"),
            [
                "pipecat:response.done",
                "ignored:tool_pending",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
    ],
    "a guardrail cut, then its safe line as soon as the stopped response is over": [
        *CONNECT,
        *SPEAKING,
        (3300, interrupt(InterruptionSource.PROCESSOR), CUT_AT_1200),
        (3310, want(ResponseReason.SAFE_LINE, "Say: sorry."), ["event:ResponseRequested"]),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
                "event:ResponseRequested",
                "state:thinking",
                "send:response.create",
            ],
        ),
    ],
    "cancel racing response.done: the reply completed first, then cancel_not_active": [
        *CONNECT,
        *SPEAKING,
        (3300, interrupt(InterruptionSource.APPLICATION), ["stop", *CUT_AT_1200]),
        (
            3301,
            done("resp_1", items=("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
        (3350, error("response_cancel_not_active"), ["event:ProviderErrorSeen"]),
    ],
    "an interruption during playout cuts only the audio still to be heard": [
        *CONNECT,
        *SPEAKING,
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (
            3300,
            speech_started(),
            [
                "caller-speaking",
                "stop",
                "send:conversation.item.truncate item_1@1200",
                "event:InterruptionHandled",
                "event:ItemTruncated",
                "state:listening",
                "end-response",
            ],
        ),
    ],
    "a new server response while the last one is still heard": [
        *CONNECT,
        *SPEAKING,
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (
            2400,
            created("resp_2"),
            ["state:thinking", "event:ResponseCreated", "pipecat:response.created"],
        ),
    ],
    "the output went quiet early (a dropped tail): playout ends when its position stops": [
        *CONNECT,
        *SERVER_TURN,
        (2100, audio("resp_1", "item_1", 3000), ["state:speaking", "play:item_1+marker+tts"]),
        (2100, played("item_1", 2900), []),
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (5000, output_stopped(), []),
        (5900, tick(), []),
        (6000, tick(), ["state:listening"]),
    ],
    "local turns: the call commits and asks; a barge-in clears the input but keeps the onset": [
        *CONNECT,
        (100, caller_audio(300), ["append"]),
        (
            500,
            local_turn_ended(),
            [
                "send:input_audio_buffer.commit",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
        (
            600,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (700, audio("resp_1", "item_1", 2000), ["state:speaking", "play:item_1+marker+tts"]),
        (700, played("item_1", 2000), []),
        (900, caller_audio(100), ["append"]),
        (
            1000,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:input_audio_buffer.clear",
                "append",
                "send:response.cancel resp_1",
                "send:conversation.item.truncate item_1@300",
                "event:InterruptionHandled",
                "event:ItemTruncated",
                "state:cancelling",
                "end-response",
            ],
        ),
    ],
    "requests before the first session wait for it": [
        (0, lambda call, now: call.start(now), ["open+0"]),
        (5, want(ResponseReason.GREETING), ["event:ResponseRequested"]),
        (10, opened(), []),
        (20, session_created(), ["pipecat:session.created"]),
        (
            30,
            session_updated(),
            [
                "pipecat:session.updated",
                "state:listening",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
    ],
    "an error that is no connection failure is the request's problem, not the call's": [
        *CONNECT,
        (100, error("invalid_value"), ["event:ProviderErrorSeen", "error"]),
        (200, want(), ["event:ResponseRequested", "state:thinking", "create"]),
    ],
}

CONFIGS: dict[str, dict[str, Any]] = {
    "local turns: the call commits and asks; a barge-in clears the input but keeps the onset": {
        "turns": TurnDetection(server_vad=False, silence_ms=None)
    },
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run(SCENARIOS[name], new_call(**CONFIGS.get(name, {})))


def test_truncation_and_interruption_report_what_was_heard() -> None:
    call = run([*CONNECT, *SPEAKING])
    commands = call.interrupt(InterruptionSource.APPLICATION, 3300)
    handled = next(
        c.event
        for c in commands
        if isinstance(c, Publish) and isinstance(c.event, InterruptionHandled)
    )
    truncated = next(
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, ItemTruncated)
    )
    assert (handled.item_id, handled.response_id, handled.cancel_sent) == ("item_1", "resp_1", True)
    assert (truncated.audio_end_ms, truncated.received_ms) == (1200, 3000)


def test_a_cut_waits_for_the_position_the_output_reports_then_truncates_there() -> None:
    call = new_call()
    call.ledger.reports_cut_positions(1000)
    cut_without_truncate = [c for c in CUT_AT_1200 if "truncat" not in c.lower()]
    run(
        [
            *CONNECT,
            *SPEAKING,
            (3300, speech_started(), ["caller-speaking", "stop", *cut_without_truncate]),
            (3400, tick(), []),  # the far end has not said yet
            (3500, cut_reported("item_1", 1130), []),
            (
                3510,
                tick(),
                ["send:conversation.item.truncate item_1@1130", "event:ItemTruncated"],
            ),
            (3610, tick(), []),  # truncated once
        ],
        call,
    )


def test_a_cut_position_that_never_comes_truncates_at_the_outputs_own_position() -> None:
    call = new_call()
    call.ledger.reports_cut_positions(1000)
    run([*CONNECT, *SPEAKING], call)
    call.interrupt(InterruptionSource.APPLICATION, 3300)
    assert [describe(c) for c in call.tick(4200)] == []
    assert [describe(c) for c in call.tick(4300)] == [
        "send:conversation.item.truncate item_1@1200",
        "event:ItemTruncated",
    ]


def test_a_cut_reply_is_remembered_only_as_far_as_it_was_heard() -> None:
    call = run([*CONNECT, *SERVER_TURN])
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
    call.interrupt(InterruptionSource.PROCESSOR, 2400)  # 300 of 1000 ms heard
    call.server_event(event_of(done("resp_1", "cancelled", ("item_1",))), 2450)
    texts = [turn.text for turn in call.record.memory.turns]
    assert texts == ["(spoke; no transcript)", "one two three (interrupted)"]


def test_the_machine_is_strict_an_impossible_move_raises() -> None:
    call = run(CONNECT)
    with pytest.raises(IllegalTransitionError):
        call._move(CallTrigger.AUDIO_STARTED, 100)  # audio with no response asked for


def test_not_strict_an_impossible_move_is_published_as_rejected() -> None:
    call = RealtimeCall(CallConfig(strict=False), random=random.Random(1).random, new_id=str)
    commands = call._move(CallTrigger.AUDIO_STARTED, 5)
    assert [type(c.event) for c in commands if isinstance(c, Publish)] == [TransitionRejected]
    assert call.machine.state is CallState.IDLE


def test_speech_stopped_is_located_in_the_callers_frames() -> None:
    call = run(CONNECT, new_call(turns=TurnDetection(server_vad=True, silence_ms=500)))
    for frame_id in range(10):
        call.user_audio(bytes(100 * PCM_MS), frame_id, 100 + frame_id * 100)
    commands = call.server_event(event_of(speech_stopped(750)), 1200)
    stopped = commands[0].event  # type: ignore[union-attr]
    assert (stopped.frame_id, stopped.offset_ms, stopped.sent_at_ms) == (2, 50, 300)


def _create(commands: list[Command]) -> CreateResponse:
    [create] = [c for c in commands if isinstance(c, CreateResponse)]
    return create


def test_only_a_call_with_no_conversation_yet_sends_the_applications_context() -> None:
    # The application speaks first (a greeting): its context goes in before the response.
    call = run(CONNECT)
    assert not call.holds_conversation
    assert _create(
        call.response_wanted(ResponseReason.APPLICATION, "greet", 40)
    ).set_up_conversation

    # The server's VAD answered the caller first: the session holds the conversation, so
    # the response voxpipe asks for next (a tool result's) sends no context again. It did:
    # pipecat's set-up put the whole history in as one more user message (handoff test).
    call = run(CONNECT + SERVER_TURN)
    assert call.holds_conversation
    call.server_event(event_of(done("resp_1", items=("item_1",))), 2100)
    asked = call.response_wanted(ResponseReason.TOOL_RESULT, "tool", 2200)
    assert not _create(asked).set_up_conversation

    # A committed caller turn alone is a conversation too.
    call = run(CONNECT)
    call.server_event(event_of(committed("user_1")), 50)
    assert call.holds_conversation
