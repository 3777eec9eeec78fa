"""Classified recovery: classes, typed errors, deterministic backoff, bounded retries."""

from __future__ import annotations

import random

import pytest

from voxpipe.call.recovery import (
    BackoffConfig,
    FailureClass,
    FailureSignal,
    GiveUp,
    HandshakeRejected,
    NetworkFailed,
    ProviderErrored,
    Reconnect,
    RecoveryPolicy,
    SocketClosed,
    classify,
    to_error,
)
from voxpipe.errors import (
    ConfigError,
    FatalProviderError,
    RetryBudgetExhaustedError,
    SessionError,
    Side,
    TransportError,
)

C = FailureClass


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        (SocketClosed(1001, "going away"), C.TRANSPORT),
        (SocketClosed(1006), C.TRANSPORT),
        (SocketClosed(1011, "internal error"), C.TRANSPORT),
        (SocketClosed(1000), C.TRANSPORT),  # the call was live: an unexpected close
        (SocketClosed(4999), C.TRANSPORT),
        (SocketClosed(1008, "policy violation"), C.SESSION),
        (NetworkFailed("connection reset"), C.TRANSPORT),
        (HandshakeRejected(401), C.SESSION),
        (HandshakeRejected(403), C.SESSION),
        (HandshakeRejected(503), C.TRANSPORT),
        (HandshakeRejected(429), C.TRANSPORT),
        (HandshakeRejected(429, "insufficient_quota"), C.FATAL),
        (HandshakeRejected(401, "invalid_api_key"), C.FATAL),
        (HandshakeRejected(404), C.FATAL),
        (ProviderErrored("session_expired", "invalid_request_error"), C.SESSION),
        (ProviderErrored("token_expired"), C.SESSION),
        (ProviderErrored("invalid_api_key"), C.FATAL),
        (ProviderErrored("insufficient_quota"), C.FATAL),
        (ProviderErrored("billing_hard_limit_reached"), C.FATAL),
        (ProviderErrored("server_error", "server_error"), C.TRANSPORT),
        (ProviderErrored("conversation_already_has_active_response"), None),
        (ProviderErrored("response_cancel_not_active"), None),
        (ProviderErrored(None, "invalid_request_error"), None),
    ],
)
def test_classify(signal: FailureSignal, expected: FailureClass | None) -> None:
    assert classify(signal) is expected


@pytest.mark.parametrize(
    ("signal", "cls", "error_type", "retryable"),
    [
        (SocketClosed(1006), C.TRANSPORT, TransportError, True),
        (HandshakeRejected(401), C.SESSION, SessionError, True),
        (ProviderErrored("insufficient_quota"), C.FATAL, FatalProviderError, False),
    ],
)
def test_typed_errors(
    signal: FailureSignal, cls: FailureClass, error_type: type[Exception], retryable: bool
) -> None:
    error = to_error(signal, cls)
    assert isinstance(error, error_type)
    assert error.retryable is retryable and error.side is Side.REMOTE


def test_fatal_error_carries_the_code() -> None:
    error = to_error(ProviderErrored("invalid_api_key", message="bad key"), C.FATAL)
    assert isinstance(error, FatalProviderError) and error.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("attempt", "random_value", "expected_ms"),
    [
        (1, 0.0, 125),  # half fixed, half jittered
        (1, 0.999, 249),
        (2, 0.5, 375),
        (3, 0.0, 500),
        (7, 0.0, 5_000),  # 16 s capped at 10 s
        (20, 0.999, 9_995),
    ],
)
def test_backoff_delay(attempt: int, random_value: float, expected_ms: int) -> None:
    assert BackoffConfig().delay_ms(attempt, random_value) == expected_ms


def test_no_jitter_is_plain_exponential() -> None:
    config = BackoffConfig(jitter=0.0, initial_ms=100, max_ms=1_000)
    assert [config.delay_ms(a, 0.7) for a in range(1, 6)] == [100, 200, 400, 800, 1_000]


@pytest.mark.parametrize(
    "overrides",
    [{"jitter": 1.5}, {"multiplier": 0.5}, {"initial_ms": -1}, {"max_consecutive": 0}],
)
def test_bad_backoff_config(overrides: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        BackoffConfig(**overrides)  # type: ignore[arg-type]


def test_same_seed_same_schedule() -> None:
    def schedule(seed: int) -> list[int]:
        policy = RecoveryPolicy(random.Random(seed).random)
        out = []
        for i in range(5):
            action = policy.on_failure(SocketClosed(1006), i * 1_000)
            assert isinstance(action, Reconnect)
            out.append(action.delay_ms)
        return out

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


def test_session_failure_refreshes_the_secret() -> None:
    policy = RecoveryPolicy(lambda: 0.5)
    action = policy.on_failure(ProviderErrored("session_expired"), 10_000)
    assert isinstance(action, Reconnect)
    assert action.refresh_secret and action.attempt == 1
    assert action.at_ms == 10_000 + action.delay_ms
    assert isinstance(action.error, SessionError)
    transport = policy.on_failure(SocketClosed(1011), 11_000)
    assert isinstance(transport, Reconnect) and not transport.refresh_secret


def test_fatal_gives_up_at_once() -> None:
    policy = RecoveryPolicy(lambda: 0.0)
    action = policy.on_failure(ProviderErrored("billing_hard_limit_reached"), 0)
    assert isinstance(action, GiveUp) and isinstance(action.error, FatalProviderError)
    assert policy.total_attempts == 0


def test_non_failures_are_not_recovery_matters() -> None:
    policy = RecoveryPolicy(lambda: 0.0)
    assert policy.on_failure(ProviderErrored("response_cancel_not_active"), 0) is None


def test_consecutive_failures_end_in_a_typed_give_up() -> None:
    policy = RecoveryPolicy(lambda: 0.0, BackoffConfig(max_consecutive=3))
    actions = [policy.on_failure(SocketClosed(1006), i) for i in range(4)]
    assert [type(a) for a in actions] == [Reconnect, Reconnect, Reconnect, GiveUp]
    give_up = actions[-1]
    assert isinstance(give_up, GiveUp)
    assert isinstance(give_up.error, RetryBudgetExhaustedError)
    assert isinstance(give_up.error.last_error, TransportError)
    assert not give_up.error.retryable and give_up.error.attempts == 3


def test_success_resets_consecutive_but_flapping_still_ends() -> None:
    policy = RecoveryPolicy(lambda: 0.0, BackoffConfig(max_consecutive=2, max_in_window=5))
    results = []
    for i in range(10):  # connects, then drops at once, every second
        results.append(policy.on_failure(SocketClosed(1006), i * 1_000))
        policy.on_connected()
    assert sum(isinstance(a, Reconnect) for a in results) == 5
    assert isinstance(results[5], GiveUp)


def test_window_slides() -> None:
    policy = RecoveryPolicy(lambda: 0.0, BackoffConfig(max_in_window=2, window_ms=60_000))
    for t in (0, 1_000):
        assert isinstance(policy.on_failure(NetworkFailed("reset"), t), Reconnect)
        policy.on_connected()
    assert isinstance(policy.on_failure(NetworkFailed("reset"), 2_000), GiveUp)
    assert isinstance(policy.on_failure(NetworkFailed("reset"), 61_001), Reconnect)
    assert policy.counts[C.TRANSPORT] == 4
