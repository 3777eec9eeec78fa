"""RealtimeCall, the client core, as protocol scripts: a call that loses its socket, its
session or its budget, is rate-limited, or rolls over to a fresh session.

Each scenario is a script of ``tests/support/call_script.py`` (its docstring
says how commands are written). Responses, barge-ins, tools and turns are in
``test_call_realtime.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from call_script import (
    CONNECT,
    SERVER_TURN,
    SPEAKING,
    Step,
    audio,
    caller_audio,
    committed,
    created,
    describe,
    done,
    error,
    event_of,
    function_call,
    item_added,
    lost,
    new_call,
    opened,
    rate_limits,
    run,
    server,
    session_created,
    session_updated,
    tick,
    transcribed,
    want,
    words,
)
from openai.types.realtime import (
    RateLimitsUpdatedEvent,
)

from voxpipe.call import (
    BackoffConfig,
    CallState,
    ResponseReason,
    RolloverConfig,
)
from voxpipe.call.commands import (
    CreateResponse,
    EndCall,
    Publish,
)
from voxpipe.call.events import (
    CallFailed,
    RolledOver,
)
from voxpipe.call.recovery import FailureClass, HandshakeRejected, NetworkFailed, SocketClosed
from voxpipe.errors import FatalProviderError, RetryBudgetExhaustedError

SCENARIOS: dict[str, list[Step]] = {
    "the socket closes mid-response: reconnect, seed, replay the caller's audio": [
        *CONNECT,
        *SPEAKING,
        (
            2500,
            lost(SocketClosed(1011, "boom")),
            [
                "close",
                "state:reconnecting",
                "event:Reconnecting",
                "open+165",
            ],
        ),
        (2600, caller_audio(100), []),  # held: no session
        (2700, opened(), []),
        (2710, session_created(), ["pipecat:session.created"]),
        (
            2720,
            session_updated(),
            [  # the caller's committed turn (no transcript) seeds it
                "pipecat:session.updated",
                "send:conversation.item.create",
                "state:listening",
                "append:replay",
                "event:Reconnected",
            ],
        ),
        (2800, caller_audio(20), ["append"]),
    ],
    "session_expired: a fresh secret, a new session seeded with what was said": [
        *CONNECT,
        (100, item_added("user_1"), ["pipecat:conversation.item.added"]),
        (110, committed("user_1"), []),
        (
            120,
            transcribed("user_1", "When do you open?"),
            ["pipecat:conversation.item.input_audio_transcription.completed"],
        ),
        (
            130,
            created("resp_1"),
            ["state:thinking", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            140,
            words("resp_1", "item_1", "At nine."),
            ["pipecat:response.output_audio_transcript.delta"],
        ),
        (150, done("resp_1", items=("item_1",)), ["pipecat:response.done", "state:listening"]),
        (
            900,
            error("session_expired"),
            [
                "event:ProviderErrorSeen",
                "close",
                "state:reconnecting",
                "event:Reconnecting",
                "open+165+secret",
            ],
        ),
        (1200, opened(), []),
        (1210, session_created(), ["pipecat:session.created"]),
        (
            1220,
            session_updated(),
            [
                "pipecat:session.updated",
                "send:conversation.item.create",
                "send:conversation.item.create",
                "state:listening",
                "event:Reconnected",
            ],
        ),
        (1230, item_added("seed_0"), []),  # our own seed: not a new turn for pipecat
    ],
    "a refused key is fatal: never retried, the call ends": [
        *CONNECT,
        (
            500,
            error("invalid_api_key", "invalid_request_error"),
            [
                "event:ProviderErrorSeen",
                "close",
                "state:reconnecting",
                "state:failed",
                "event:CallFailed",
                "end-call",
            ],
        ),
        (600, tick(), []),
        (700, want(), ["ignored:not_live"]),
    ],
    "a refused first connect (401) mints a new secret; a 404 ends the call": [
        (0, lambda call, now: call.start(now), ["open+0"]),
        (
            10,
            lost(HandshakeRejected(401)),
            ["close", "state:reconnecting", "event:Reconnecting", "open+165+secret"],
        ),
        (
            300,
            lost(HandshakeRejected(404)),
            [
                "close",
                "state:reconnecting",
                "state:failed",
                "event:CallFailed",
                "end-call",
            ],
        ),
    ],
    "rate limits exhausted: the failed response is asked again once the limit resets": [
        *CONNECT,
        (100, rate_limits(0, 0.5), ["event:RateLimitsUpdated"]),
        (110, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            120,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            130,
            done("resp_1", "failed", error_code="rate_limit_exceeded"),
            [
                "pipecat:response.done",
                "state:recovering",
                "state:listening",
            ],
        ),
        (500, tick(), []),
        (630, tick(), ["event:ResponseRequested", "state:thinking", "create"]),
    ],
    "rollover between turns; while a tool runs it waits": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2150, done("resp_1"), ["pipecat:response.done", "ignored:tool_pending"]),
        (16_000, tick(), []),  # due by age, but a tool is running
        (16_100, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            16_200,
            created("resp_2"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (16_300, done("resp_2"), ["pipecat:response.done", "state:listening"]),
        (16_400, tick(), ["state:rolling_over", "close", "open+0"]),
        (16_500, opened(), []),
        (16_510, session_created(), ["pipecat:session.created"]),
        (
            16_520,
            session_updated(),
            [
                "pipecat:session.updated",
                "send:conversation.item.create",
                "state:listening",
                "event:RolledOver",
            ],
        ),
    ],
    "a stalled stream is a dead socket": [
        *CONNECT,
        *SERVER_TURN,
        (5000, tick(), []),
        (10_100, tick(), ["close", "state:reconnecting", "event:Reconnecting", "open+165"]),
    ],
    "a response that never starts times out and is cleared": [
        *CONNECT,
        (100, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            110,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            5_000,
            server(RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=[]),
            ["event:RateLimitsUpdated"],
        ),
        (
            10_000,
            server(RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=[]),
            ["event:RateLimitsUpdated"],
        ),
        (
            15_200,
            tick(),
            [
                "state:recovering",
                "send:response.cancel resp_1",
                "state:listening",
            ],
        ),
        (15_300, audio("resp_1", "item_1", 100), []),  # the cleared response never plays
    ],
}

SHORT_SESSIONS = RolloverConfig(session_cap_ms=20_000, margin_ms=5_000, force_margin_ms=500)
CONFIGS: dict[str, dict[str, Any]] = {
    "rollover between turns; while a tool runs it waits": {"rollover": SHORT_SESSIONS},
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run(SCENARIOS[name], new_call(**CONFIGS.get(name, {})))


def test_the_retry_budget_ends_a_reconnect_loop() -> None:
    call = new_call(backoff=BackoffConfig(initial_ms=10, max_ms=10, jitter=0, max_consecutive=2))
    run(CONNECT, call)
    assert describe(call.connection_failed(NetworkFailed("down"), 100)[-1]) == "open+10"
    assert describe(call.connection_failed(NetworkFailed("down"), 200)[-1]) == "open+10"
    commands = call.connection_failed(NetworkFailed("down"), 300)
    failed = [
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, CallFailed)
    ]
    assert isinstance(failed[0].error, RetryBudgetExhaustedError)
    assert failed[0].failure_class is FailureClass.TRANSPORT
    assert call.machine.state is CallState.FAILED


def test_a_fatal_error_is_typed() -> None:
    call = run(CONNECT)
    commands = call.server_event(event_of(error("insufficient_quota")), 100)
    ended = [c for c in commands if isinstance(c, EndCall)]
    assert (
        isinstance(ended[0].error, FatalProviderError)
        and ended[0].error.code == "insufficient_quota"
    )


def test_rollover_reports_how_long_the_switch_took() -> None:
    call = new_call(rollover=SHORT_SESSIONS)
    run(CONNECT, call)
    call.tick(16_000)
    call.session_opened(16_100)
    call.server_event(event_of(session_created()), 16_110)
    commands = call.server_event(event_of(session_updated()), 16_150)
    rolled = [
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, RolledOver)
    ]
    assert rolled[0].switch_ms == 150


def test_rate_limited_responses_are_asked_again_a_bounded_number_of_times() -> None:
    call = run(CONNECT)
    call.server_event(event_of(rate_limits(0, 0.1)), 40)
    now, retries = 100, 0
    for n in range(8):
        asked = call.response_wanted(ResponseReason.APPLICATION, f"r{n}", now) if n == 0 else []
        asked += call.tick(now)
        if any(isinstance(c, CreateResponse) for c in asked):
            retries += n > 0
            call.server_event(event_of(created(f"resp_{n}")), now + 1)
            call.server_event(
                event_of(done(f"resp_{n}", "failed", error_code="rate_limit_exceeded")), now + 2
            )
        now += 200
    assert retries == 4  # max_rate_limit_retries, then the caller's next turn asks anew
    assert call.machine.state is CallState.LISTENING
