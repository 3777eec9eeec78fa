"""Token rotation policy: refresh timing, retries, counters, static keys."""

from __future__ import annotations

import pytest

from voxpipe.call.tokens import (
    RotationConfig,
    RotationFailed,
    Secret,
    SecretRotated,
    TokenMode,
    TokenRotationPolicy,
    key_for_endpoint,
)
from voxpipe.errors import ConfigError

T0 = 1_800_000_000_000  # epoch ms; the policy works on wall-clock time like expires_at


@pytest.mark.parametrize(
    ("ttl_s", "refresh_after_s"),
    [
        (600, 570),  # default TTL: 30 s before expiry
        (120, 90),
        (60, 30),  # both rules agree
        (40, 20),  # a short TTL never refreshes before half its life
        (10, 5),
    ],
)
def test_refresh_time(ttl_s: int, refresh_after_s: int) -> None:
    policy = TokenRotationPolicy()
    event = policy.on_minted(Secret("ek_1", T0 + ttl_s * 1000), T0)
    assert event == SecretRotated(T0 + ttl_s * 1000, T0 + refresh_after_s * 1000, 1)
    assert not policy.due(T0 + refresh_after_s * 1000 - 1)
    assert policy.due(T0 + refresh_after_s * 1000)


def test_nothing_minted_is_due_and_unusable() -> None:
    policy = TokenRotationPolicy()
    assert policy.due(T0)
    assert policy.usable(T0) is None


def test_usable_until_expiry() -> None:
    policy = TokenRotationPolicy()
    secret = Secret("ek_1", T0 + 60_000)
    policy.on_minted(secret, T0)
    assert policy.usable(T0 + 59_999) is secret
    assert policy.usable(T0 + 60_000) is None


def test_a_fresh_secret_is_never_one_whose_refresh_is_due() -> None:
    """What a page starting a call later gets: the current secret until 30 s before it
    expires, then nothing (mint first), though it could still start a session."""
    policy = TokenRotationPolicy()
    assert policy.fresh(T0) is None  # nothing minted yet
    first = Secret("ek_1", T0 + 120_000)
    policy.on_minted(first, T0)
    assert policy.fresh(T0 + 89_999) is first
    assert policy.fresh(T0 + 90_000) is None  # due: 30 s left
    assert policy.usable(T0 + 90_000) is first  # a reconnect now could still use it
    assert policy.fresh(T0 + 130_000) is None  # expired
    second = Secret("ek_2", T0 + 250_000)
    policy.on_minted(second, T0 + 130_000)
    assert policy.fresh(T0 + 130_000) is second


def test_a_static_key_is_always_fresh() -> None:
    policy = TokenRotationPolicy(TokenMode.STATIC)
    key = Secret("sk-1", None)
    policy.on_minted(key, T0)
    assert policy.fresh(T0 + 10**9) is key


@pytest.mark.parametrize(
    ("failures", "expected_delays_s"),
    [(1, [1]), (3, [1, 2, 4]), (6, [1, 2, 4, 8, 15, 15])],
)
def test_failed_rotation_retries_with_capped_backoff(
    failures: int, expected_delays_s: list[int]
) -> None:
    policy = TokenRotationPolicy()
    now = T0
    delays = []
    for _ in range(failures):
        failed = policy.on_mint_failed(now, "HTTP 503")
        delays.append((failed.retry_at_ms - now) // 1000)
        now = failed.retry_at_ms
    assert delays == expected_delays_s
    assert policy.failures == failures and policy.consecutive_failures == failures
    assert policy.due(now)


def test_retry_lands_before_the_old_secret_lapses() -> None:
    policy = TokenRotationPolicy(
        config=RotationConfig(retry_initial_ms=20_000, retry_max_ms=20_000)
    )
    policy.on_minted(Secret("ek_1", T0 + 120_000), T0)
    failed = policy.on_mint_failed(T0 + 105_000, "timeout")
    assert failed == RotationFailed(1, T0 + 119_999, "timeout", 1)


def test_success_after_failures_resets_the_streak_not_the_count() -> None:
    policy = TokenRotationPolicy()
    policy.on_mint_failed(T0, "HTTP 500")
    policy.on_mint_failed(T0 + 1_000, "HTTP 500")
    event = policy.on_minted(Secret("ek_2", T0 + 300_000), T0 + 3_000)
    assert event.rotations == 1
    assert (policy.failures, policy.consecutive_failures) == (2, 0)


def test_static_key_never_rotates() -> None:
    policy = TokenRotationPolicy(TokenMode.STATIC)
    key = Secret("sk-live", None)
    event = policy.on_minted(key, T0)
    assert event.next_refresh_ms is None
    assert not policy.due(T0) and not policy.due(T0 + 10**12)
    assert policy.usable(T0 + 10**12) is key


def test_secret_value_never_shows_in_repr() -> None:
    secret = Secret("ek_topsecret", T0)
    assert "topsecret" not in repr(secret) and "topsecret" not in str(secret)


@pytest.mark.parametrize(
    "overrides",
    [
        {"refresh_before_ms": -1},
        {"min_life_fraction": 1.0},
        {"retry_initial_ms": 0},
        {"retry_initial_ms": 5_000, "retry_max_ms": 1_000},
    ],
)
def test_bad_config(overrides: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RotationConfig(**overrides)  # type: ignore[arg-type]


ENV_KEY = "sk-from-the-environment"


@pytest.mark.parametrize(
    ("url", "explicit", "expected"),
    [
        # The environment's key goes to OpenAI's own host, over TLS, and nowhere else.
        ("wss://api.openai.com/v1/realtime?model=gpt-realtime", None, ENV_KEY),
        ("ws://api.openai.com/v1/realtime", None, None),
        ("wss://api.openai.com.evil.example/v1/realtime", None, None),
        ("ws://127.0.0.1:8765/v1/realtime", None, None),  # a keyless loopback server
        ("wss://realtime.example.com/v1/realtime", None, None),
        # A key given for an endpoint goes to it, over TLS or to this machine.
        ("ws://127.0.0.1:8765/v1/realtime", "local-key", "local-key"),
        ("ws://localhost:8765/v1/realtime", "local-key", "local-key"),
        ("ws://[::1]:8765/v1/realtime", "local-key", "local-key"),
        ("wss://realtime.example.com/v1/realtime", "their-key", "their-key"),
    ],
)
def test_a_key_goes_only_where_it_belongs(url: str, explicit: str | None, expected: str) -> None:
    assert key_for_endpoint(url, explicit=explicit, environment=ENV_KEY) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://10.0.0.7:8765/v1/realtime", "in clear text to 10.0.0.7"),
        ("ws://realtime.example.com/v1/realtime", "in clear text to realtime.example.com"),
        ("http://127.0.0.1:8765/v1/realtime", "not a Realtime endpoint"),
        ("127.0.0.1:8765", "not a Realtime endpoint"),
    ],
)
def test_a_key_is_never_sent_in_clear_text_to_another_machine(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        key_for_endpoint(url, explicit="a-key", environment=ENV_KEY)
