"""Active-response guard: queueing, cancels, and the two errors it absorbs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voxpipe.call.response_guard import (
    CancelConfirmed,
    GuardErrorCode,
    GuardOutput,
    InterruptionSource,
    ResponseGuard,
    ResponseQueued,
    ResponseReason,
    ResponseRequest,
    ResponseRequestDropped,
    SendResponseCancel,
    SendResponseCreate,
)

USER = ResponseRequest("r1", ResponseReason.USER_TURN)
TOOL = ResponseRequest("r2", ResponseReason.TOOL_RESULT)
APP = ResponseRequest("r3", ResponseReason.APPLICATION)

Step = tuple[Callable[[ResponseGuard], list[GuardOutput]], list[GuardOutput]]


def run(steps: list[Step], guard: ResponseGuard | None = None) -> ResponseGuard:
    guard = guard or ResponseGuard()
    for i, (action, expected) in enumerate(steps):
        assert action(guard) == expected, f"step {i}"
    return guard


def create(r: ResponseRequest) -> Callable[[ResponseGuard], list[GuardOutput]]:
    return lambda g: g.request_response(r)


def created(rid: str) -> Callable[[ResponseGuard], list[GuardOutput]]:
    return lambda g: g.on_response_created(rid)


def done(rid: str | None) -> Callable[[ResponseGuard], list[GuardOutput]]:
    return lambda g: g.on_response_done(rid)


def interrupt(src: InterruptionSource) -> Callable[[ResponseGuard], list[GuardOutput]]:
    return lambda g: g.on_interruption(src)


def error(code: GuardErrorCode) -> Callable[[ResponseGuard], list[GuardOutput]]:
    return lambda g: g.on_error(code)


SCENARIOS: dict[str, list[Step]] = {
    "idle guard sends at once": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (done("resp_1"), []),
    ],
    "second create waits for response.done": [
        (create(USER), [SendResponseCreate(USER)]),
        (create(TOOL), [ResponseQueued(TOOL, 1)]),
        (created("resp_1"), []),
        (done("resp_1"), [SendResponseCreate(TOOL)]),
    ],
    "create before response.created is also queued": [
        (create(USER), [SendResponseCreate(USER)]),
        (create(TOOL), [ResponseQueued(TOOL, 1)]),
    ],
    "local barge-in cancels the active response": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (interrupt(InterruptionSource.LOCAL_VAD), [SendResponseCancel("resp_1")]),
        (done("resp_1"), [CancelConfirmed("resp_1")]),
    ],
    "guardrail cancels even with server VAD auto-cancel on": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (interrupt(InterruptionSource.PROCESSOR), [SendResponseCancel("resp_1")]),
    ],
    "interrupt with nothing active sends nothing": [
        (interrupt(InterruptionSource.APPLICATION), []),
    ],
    "a second interrupt does not cancel twice": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (interrupt(InterruptionSource.LOCAL_VAD), [SendResponseCancel("resp_1")]),
        (interrupt(InterruptionSource.PROCESSOR), []),
    ],
    "interrupt drops queued requests": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (create(TOOL), [ResponseQueued(TOOL, 1)]),
        (
            interrupt(InterruptionSource.LOCAL_VAD),
            [ResponseRequestDropped(TOOL), SendResponseCancel("resp_1")],
        ),
        (done("resp_1"), [CancelConfirmed("resp_1")]),
    ],
    "interrupt before response.created cancels again once it exists": [
        (create(USER), [SendResponseCreate(USER)]),
        (interrupt(InterruptionSource.LOCAL_VAD), [SendResponseCancel(None)]),
        (error(GuardErrorCode.CANCEL_NOT_ACTIVE), []),
        (created("resp_1"), [SendResponseCancel("resp_1")]),
        (done("resp_1"), [CancelConfirmed("resp_1")]),
    ],
    "cancel_not_active confirms the cancel and frees the slot": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_1"), []),
        (create(TOOL), [ResponseQueued(TOOL, 1)]),
        (create(APP), [ResponseQueued(APP, 2)]),
        (
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                ResponseRequestDropped(TOOL),
                ResponseRequestDropped(APP),
                SendResponseCancel("resp_1"),
            ],
        ),
        (error(GuardErrorCode.CANCEL_NOT_ACTIVE), [CancelConfirmed("resp_1")]),
        (create(USER), [SendResponseCreate(USER)]),
        # The cancelled response's late response.done must not free the new one.
        (done("resp_1"), []),
        (create(TOOL), [ResponseQueued(TOOL, 1)]),
    ],
    "stray cancel_not_active is ignored": [
        (error(GuardErrorCode.CANCEL_NOT_ACTIVE), []),
        (create(USER), [SendResponseCreate(USER)]),
    ],
    "already_has_active_response re-queues ours behind the server's": [
        (create(USER), [SendResponseCreate(USER)]),
        (created("resp_server"), []),  # server VAD created one on its own
        (error(GuardErrorCode.ALREADY_HAS_ACTIVE_RESPONSE), []),
        (done("resp_server"), [SendResponseCreate(USER)]),
        (created("resp_ours"), []),
        (done("resp_ours"), []),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run(SCENARIOS[name], ResponseGuard(server_auto_cancels=True))


@pytest.mark.parametrize(
    ("auto_cancels", "expected"),
    [(True, []), (False, [SendResponseCancel("resp_1")])],
)
def test_server_vad_barge_in_cancels_only_when_server_does_not(
    auto_cancels: bool, expected: list[GuardOutput]
) -> None:
    guard = ResponseGuard(server_auto_cancels=auto_cancels)
    guard.request_response(USER)
    guard.on_response_created("resp_1")
    assert guard.on_interruption(InterruptionSource.SERVER_VAD) == expected
    # Either way the response is now cancelled: its late audio is dropped.
    assert guard.is_cancelled("resp_1")
    assert guard.on_response_done("resp_1") == [CancelConfirmed("resp_1")]
    assert not guard.response_active


def test_queue_is_bounded() -> None:
    guard = ResponseGuard(max_queue=2)
    guard.request_response(USER)
    guard.request_response(TOOL)
    guard.request_response(APP)
    extra = ResponseRequest("r4", ResponseReason.APPLICATION)
    assert guard.request_response(extra) == [ResponseRequestDropped(TOOL), ResponseQueued(extra, 2)]
    assert guard.queued == (APP, extra)


def test_session_reset_requeues_unanswered_request() -> None:
    guard = ResponseGuard()
    guard.request_response(USER)
    guard.request_response(TOOL)
    guard.on_session_reset()
    assert not guard.response_active
    assert guard.queued == (USER, TOOL)
    assert guard.flush() == [SendResponseCreate(USER)]
    assert guard.flush() == []


def test_session_reset_mid_response_does_not_resend_it() -> None:
    guard = ResponseGuard()
    guard.request_response(USER)
    guard.on_response_created("resp_1")
    guard.on_session_reset()
    assert guard.queued == ()
    assert guard.active_response_id is None


def test_cancelled_ids_are_bounded() -> None:
    guard = ResponseGuard(remember_cancelled=2)
    for i in range(3):
        guard.request_response(USER)
        guard.on_response_created(f"resp_{i}")
        guard.on_interruption(InterruptionSource.LOCAL_VAD)
        guard.on_response_done(f"resp_{i}")
    assert not guard.is_cancelled("resp_0")
    assert guard.is_cancelled("resp_1") and guard.is_cancelled("resp_2")
