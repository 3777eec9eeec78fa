"""Every fault class of the realtime server, and what the call does about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from realtime_calls import API_KEY, compose, realtime_call

from voxpipe.call import BackoffConfig, CallState, FailureClass, RolloverConfig
from voxpipe.errors import FatalProviderError
from voxpipe.processors.realtime import (
    CallFailed,
    RateLimitsUpdated,
    Reconnected,
    Reconnecting,
    ResponseCreated,
    TokenRotated,
)
from voxpipe.transports.realtime_server import (
    CloseMidResponse,
    ExhaustRateLimits,
    RefuseNextConnection,
    SendError,
    ServerConfig,
    Stall,
)

FAST = BackoffConfig(initial_ms=50, max_ms=400)
TWO_QUESTIONS = [300, "What time do you open on Saturday?", 3500, "And on Sunday?", 3500]
REPLIES = ["We open at nine on Saturday morning.", "On Sunday we are closed."]


def _bot_ms_after(call: Any, t_ms: float) -> float:
    return sum(w.duration_ms for w in call.transport.written if w.at_ms > t_ms)


async def _answered_after_recovery(call: Any) -> None:
    """The call went on: a response after the reconnect, heard, then back to listening."""
    await call.wait_event(Reconnected)
    back_at = call.transport.clock.now_ms()
    created = len(call.of(ResponseCreated))
    await call.wait_event(ResponseCreated, created + 1, timeout_s=20)
    await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 15)
    assert _bot_ms_after(call, back_at) > 500  # the caller heard the answer


async def test_socket_closed_mid_response_reconnects_and_the_call_goes_on(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, TWO_QUESTIONS, recording)
    async with realtime_call(recording, script=REPLIES, backoff=FAST) as call:
        call.server.arm(CloseMidResponse(code=1011))
        await _answered_after_recovery(call)

    reconnecting = call.of(Reconnecting)
    assert [r.failure_class for r in reconnecting] == [FailureClass.TRANSPORT]
    assert "1011" in reconnecting[0].reason
    assert reconnecting[0].delay_ms <= FAST.max_ms
    assert call.of(Reconnected)[0].seeded_turns >= 1  # the first question came along
    assert call.service.call.record.user_turns_committed == 2  # no user turn lost
    assert call.service.is_usable and not [
        e for e in call.recorder.errors if isinstance(e.exception, FatalProviderError)
    ]


async def test_session_expired_opens_a_new_session_seeded_with_a_summary(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, TWO_QUESTIONS, recording)
    config = ServerConfig(api_key=API_KEY, fault_injection=True, session_max_seconds=5.5)
    async with realtime_call(
        recording,
        script=REPLIES,
        config=config,
        backoff=FAST,
        ephemeral_ttl_s=60,
        rollover=RolloverConfig(keep_verbatim_turns=1),
    ) as call:
        await _answered_after_recovery(call)
        sessions = list(call.server.server.live_sessions)

    reconnecting = call.of(Reconnecting)[0]
    assert reconnecting.failure_class is FailureClass.SESSION
    assert reconnecting.refresh_secret  # a new secret for the new session
    rotations = [e for e in call.of(TokenRotated) if not e.failed]
    assert len(rotations) >= 2  # the first secret, then the refresh
    # Older turns as a summary in the instructions, the last one verbatim as an item.
    instructions = sessions[0].core.config.instructions
    assert "Summary of the conversation so far" in instructions
    assert "user:" in instructions
    seeded = [r.item for r in sessions[0].core.conversation.records() if r.item.type == "message"]
    assert any(i.role == "assistant" for i in seeded)
    assert call.service.call.record.user_turns_committed == 2


async def test_401_on_reconnect_gets_a_new_secret_and_connects(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, TWO_QUESTIONS, recording)
    async with realtime_call(recording, script=REPLIES, backoff=FAST, ephemeral_ttl_s=60) as call:
        call.server.arm(CloseMidResponse(code=1001))
        call.server.arm(RefuseNextConnection())
        await _answered_after_recovery(call)

    reconnecting = call.of(Reconnecting)
    assert [r.failure_class for r in reconnecting] == [FailureClass.TRANSPORT, FailureClass.SESSION]
    assert reconnecting[1].refresh_secret and "401" in reconnecting[1].reason
    assert call.of(Reconnected)[0].attempts == 2
    assert len([e for e in call.of(TokenRotated) if not e.failed]) >= 2


@pytest.mark.parametrize("code", ["invalid_api_key", "insufficient_quota"])
async def test_fatal_errors_surface_a_typed_error_and_stop(
    make_speech: Any, tmp_path: Path, code: str
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, TWO_QUESTIONS, recording)
    fatal: list[Exception] = []
    async with realtime_call(recording, script=REPLIES, backoff=FAST) as call:

        @call.service.event_handler("on_fatal_error")
        async def _on_fatal(_s: Any, error: Exception) -> None:
            fatal.append(error)

        await call.wait_event(ResponseCreated)
        call.server.arm(SendError(error_type="invalid_request_error", code=code, message=code))
        await call.wait_event(CallFailed)
        await call.wait_for(
            lambda: any(isinstance(e.exception, FatalProviderError) for e in call.recorder.errors),
            5,
        )
        await call.wait_for(lambda: call.session.finished, 10)  # the call was ended, not left

    assert len(fatal) == 1 and isinstance(fatal[0], FatalProviderError)
    assert fatal[0].code == code and not fatal[0].retryable
    assert call.service.failed and call.service.machine.state is CallState.FAILED
    assert not call.of(Reconnecting)  # no retry loop
    errors = [e for e in call.recorder.errors if isinstance(e.exception, FatalProviderError)]
    assert len(errors) == 1 and not call.service.is_usable


async def test_exhausted_rate_limits_are_exposed_and_the_response_comes_after_reset(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    spans = compose(make_speech, [300, "What time do you open on Saturday?", 7000], recording)
    async with realtime_call(recording, script=REPLIES) as call:
        # Mid-question: the response to it finds the limits empty.
        mid = spans[0][0] + 300
        await call.wait_for(
            lambda: call.transport.clock.now_ms() > call.transport.input_started_ms + mid
        )
        call.server.arm(ExhaustRateLimits(reset_seconds=3.0))
        await call.wait_for(lambda: any(e.exhausted for e in call.of(RateLimitsUpdated)), 15)
        await call.wait_for(lambda: len(call.transport.written) > 10, 15)

    assert any(e.exhausted for e in call.of(RateLimitsUpdated))
    assert call.service.call.rate_limits  # the latest limits, for the application
    assert call.service.is_usable and not [
        e for e in call.recorder.errors if isinstance(e.exception, FatalProviderError)
    ]
    assert not call.service.failed


async def test_a_stalled_stream_is_treated_as_a_dead_connection(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, TWO_QUESTIONS, recording)
    async with realtime_call(
        recording, script=REPLIES, backoff=FAST, stall_timeout_ms=1500
    ) as call:
        call.server.arm(Stall(seconds=8.0))
        await _answered_after_recovery(call)

    reconnecting = call.of(Reconnecting)[0]
    assert reconnecting.failure_class is FailureClass.TRANSPORT
    assert "no server event" in reconnecting.reason
    assert call.service.call.record.user_turns_committed == 2
