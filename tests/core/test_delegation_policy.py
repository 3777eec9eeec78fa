"""The filler policy with a fake clock: a filler only past the threshold, once per wait,
never the same wording twice in a row; and ``[delegate]`` in an agent file."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from voxpipe import ConfigError, DelegationConfigError
from voxpipe.delegation import (
    DEFAULT_FILLERS,
    BackendAnswered,
    DelegateBackend,
    DelegationSettings,
    FillerPolicy,
    FillerSpoken,
    WaitPhase,
    parse_delegate_table,
)


def wait(
    policy: FillerPolicy, start_ms: float, backend_ms: float, step_ms: float = 10
) -> list[Any]:
    """The driver's loop: ask at ``start_ms``, poll each ``step_ms``, answer ``backend_ms`` on."""
    happened: list[Any] = [policy.delegated(start_ms)]
    now = start_ms
    while now < start_ms + backend_ms:
        if (filler := policy.poll(now)) is not None:
            happened.append(filler)
        now += step_ms
    happened.append(policy.answered(start_ms + backend_ms))
    return happened


def test_a_slow_backend_gets_exactly_one_filler_then_the_answer() -> None:
    policy = FillerPolicy()
    _, *rest = wait(policy, 1_000, 1_500)
    filler, answered = rest
    assert isinstance(filler, FillerSpoken)
    assert filler.waited_ms == 700 and filler.wording == DEFAULT_FILLERS[0]
    assert answered == BackendAnswered(1, 1_500, filled=True)
    assert policy.phase is WaitPhase.IDLE


def test_a_fast_backend_gets_no_filler() -> None:
    policy = FillerPolicy()
    _, answered = wait(policy, 0, 100)
    assert answered == BackendAnswered(1, 100, filled=False)
    assert policy.poll(10_000) is None  # the wait is over: nothing falls due later


@pytest.mark.parametrize(
    ("backend_ms", "fillers"),
    [(699, 0), (700, 0), (701, 1), (5_000, 1), (60_000, 1)],  # answered at 700: no filler
)
def test_the_threshold_is_the_line(backend_ms: float, fillers: int) -> None:
    policy = FillerPolicy()
    happened = wait(policy, 0, backend_ms, step_ms=1)
    assert sum(isinstance(h, FillerSpoken) for h in happened) == fillers


def test_two_fillers_in_one_call_are_worded_differently() -> None:
    policy = FillerPolicy(DelegationSettings(fillers=("One moment.", "Let me look.")))
    words = [wait(policy, t, 1_500)[1].wording for t in (0, 10_000, 20_000, 30_000)]
    assert words == ["One moment.", "Let me look.", "One moment.", "Let me look."]
    assert all(a != b for a, b in itertools.pairwise(words))


def test_the_timer_knows_when_the_filler_falls_due() -> None:
    policy = FillerPolicy(DelegationSettings(threshold_ms=300))
    assert policy.due_at_ms() is None
    policy.delegated(50)
    assert policy.due_at_ms() == 350
    assert policy.poll(349) is None
    assert policy.poll(350) is not None
    assert policy.due_at_ms() is None  # said once: no second filler in this wait


def test_a_request_during_a_wait_joins_it() -> None:
    policy = FillerPolicy()
    first = policy.delegated(0)
    second = policy.delegated(600)
    assert (first.joined, second.joined, second.delegation) == (False, True, 1)
    filler = policy.poll(700)  # counted from the first request, not restarted
    assert filler is not None and filler.waited_ms == 700
    assert policy.answered(900) == BackendAnswered(1, 900, filled=True)


def test_an_output_with_no_wait_open_is_not_an_answer() -> None:
    policy = FillerPolicy()
    assert policy.answered(5) is None
    policy.delegated(0)
    assert policy.answered(200) is not None
    assert policy.answered(300) is None  # a second output of the same work


def test_a_request_that_never_reached_the_backend_gets_no_filler() -> None:
    policy = FillerPolicy()
    policy.delegated(0)
    policy.abandoned()
    assert policy.poll(5_000) is None and policy.answered(5_000) is None


def test_the_delegate_table_reads_every_key() -> None:
    settings = parse_delegate_table(
        {
            "backend": "openai",
            "threshold_ms": 900,
            "fillers": [" Hold on. ", "One sec."],
            "instructions": "You are the billing expert.",
        },
        "agent.toml",
    )
    assert settings == DelegationSettings(
        DelegateBackend.OPENAI, 900, ("Hold on.", "One sec."), "You are the billing expert."
    )
    assert parse_delegate_table(None, "agent.toml") is None
    assert parse_delegate_table({}, "agent.toml") == DelegationSettings()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("local", "delegate"),
        ({"backend": "anthropic"}, "delegate.backend"),
        ({"threshold_ms": "700"}, "delegate.threshold_ms"),
        ({"threshold_ms": True}, "delegate.threshold_ms"),
        ({"threshold_ms": 20}, "delegate.threshold_ms"),
        ({"fillers": ["One moment."]}, "delegate.fillers"),  # would repeat itself
        ({"fillers": ["One moment.", "one moment."]}, "delegate.fillers"),
        ({"fillers": ["One moment.", ""]}, "delegate.fillers"),
        ({"fillers": "One moment."}, "delegate.fillers"),
        ({"instructions": ""}, "delegate.instructions"),
        ({"threshold": 700}, "delegate.threshold"),
    ],
)
def test_a_bad_delegate_table_is_a_named_error(table: Any, key: str) -> None:
    with pytest.raises(DelegationConfigError) as raised:
        parse_delegate_table(table, "agent.toml")
    assert raised.value.path == "agent.toml" and raised.value.key == key
    assert isinstance(raised.value, ConfigError) and not raised.value.retryable
