"""A filler during a delegated tool call, on the realtime call's core.

Scripts of ``tests/support/call_script.py``:
the model called ``delegate`` and the backend is slow, so the driver asks for
a filler (``ResponseReason.FILLER`` with the words as response-level
instructions). The call stays CALLING_TOOL while the filler plays; the tool's
result, when it comes, is answered after the filler's response, and the call
thinks again only then. A filler asked for when there is no wait to fill (the
tool call is over, or a response is playing) is never sent, nor queued.
"""

from __future__ import annotations

from call_script import (
    CONNECT,
    SERVER_TURN,
    audio,
    created,
    describe,
    done,
    function_call,
    run,
    want,
)

from voxpipe.call import CallState, InterruptionSource, ResponseReason

FILLER = "Say exactly this, and nothing else: One moment."
CALLING = [
    *CONNECT,
    *SERVER_TURN,
    (
        2100,
        function_call("resp_1", "delegate"),
        ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
    ),
    (2150, done("resp_1"), ["pipecat:response.done", "ignored:tool_pending"]),
]
FILLER_SENT = (
    2850,
    want(ResponseReason.FILLER, FILLER),
    ["event:ResponseRequested", "send:response.create"],
)


def test_the_filler_plays_while_the_tool_runs_and_the_result_follows_it() -> None:
    call = run(
        [
            *CALLING,
            FILLER_SENT,  # no state change: the tool call is still pending
            (
                2900,
                created("resp_2"),
                ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
            ),
            (
                2950,
                audio("resp_2", "item_2", 800),
                ["ignored:tool_pending", "play:item_2+marker+tts"],
            ),
            (3000, want(), ["event:ResponseRequested"]),  # the result: queued behind the filler
            (
                3300,
                done("resp_2", items=("item_2",)),
                [
                    "audio-ended",
                    "pipecat:response.done",
                    "ignored:tool_pending",
                    "event:ResponseRequested",
                    "state:thinking",
                    "create",
                ],
            ),
        ]
    )
    assert call.machine.state is CallState.THINKING


def test_a_filler_with_no_wait_to_fill_is_never_sent() -> None:
    # Before any tool call: the caller is not waiting on a backend.
    run([*CONNECT, (500, want(ResponseReason.FILLER, FILLER), ["ignored:no_tool_pending"])])
    # While a response plays (here the model's own, before its call): nothing to fill.
    run(
        [
            *CONNECT,
            *SERVER_TURN,
            (2050, want(ResponseReason.FILLER, FILLER), ["ignored:no_tool_pending"]),
        ]
    )
    # After the result went back: the answer is coming, not a wait.
    run(
        [
            *CALLING,
            (2400, want(), ["event:ResponseRequested", "state:thinking", "create"]),
            (2850, want(ResponseReason.FILLER, FILLER), ["ignored:no_tool_pending"]),
        ]
    )


def test_a_barge_in_on_the_filler_cuts_it_and_no_later_filler_is_said() -> None:
    call = run(
        [
            *CALLING,
            FILLER_SENT,
            (
                2900,
                created("resp_2"),
                ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
            ),
            (
                2950,
                audio("resp_2", "item_2", 800),
                ["ignored:tool_pending", "play:item_2+marker+tts"],
            ),
        ]
    )
    cut = [type(c).__name__ for c in call.interrupt(InterruptionSource.SERVER_VAD, 3100)]
    assert call.machine.state is CallState.CANCELLING, cut
    assert call.guard.is_cancelled("resp_2")
    # The tool call ended with the barge-in: the next wait's filler has nothing to fill.
    late = call.response_wanted(ResponseReason.FILLER, "f", 3200, instructions=FILLER)
    assert [describe(c) for c in late] == ["ignored:no_tool_pending"]


def test_a_withdrawn_request_frees_the_slot_for_the_next() -> None:
    from voxpipe.call.response_guard import ResponseGuard, ResponseRequest, SendResponseCreate

    guard = ResponseGuard()
    filler = ResponseRequest("f", ResponseReason.FILLER, FILLER)
    result = ResponseRequest("r", ResponseReason.TOOL_RESULT, None)
    assert guard.request_response(filler) == [SendResponseCreate(filler)]
    guard.request_response(result)  # queued behind it
    assert guard.withdraw() == [SendResponseCreate(result)]  # the result goes in its place
    guard.on_response_created("resp_9")
    assert guard.withdraw() == []  # a response that is running is not withdrawn
    assert guard.response_active and guard.active_response_id == "resp_9"
