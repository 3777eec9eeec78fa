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
    BackendAsked,
    BackendDropped,
    DelegateBackend,
    DelegationSettings,
    FillerPolicy,
    FillerSpoken,
    WaitPhase,
    parse_delegate_table,
)
from voxpipe.delegation import timeline_entry as delegation_entry
from voxpipe.guardrails.config import parse_agent_config
from voxpipe.timeline import EventKind, Timeline


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
    assert policy.abandoned() == BackendDropped(1)
    assert policy.poll(5_000) is None and policy.answered(5_000) is None
    assert policy.abandoned() is None  # nothing open: nothing to drop
    assert delegation_entry(BackendDropped(1)) == (
        EventKind.DELEGATION,
        {"phase": "dropped", "delegation": 1},
    )


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


def test_the_turn_latency_runs_to_the_answer_with_the_filler_apart() -> None:
    timeline = Timeline()
    add = timeline.add
    add(1_000, EventKind.USER_STOPPED_SPEAKING)
    add(1_200, EventKind.USER_TRANSCRIPT, text="What is my balance?")
    add(1_300, EventKind.DELEGATION, phase="asked", delegation=1, joined=False)
    add(2_000, EventKind.FILLER, delegation=1, wording="One moment.", waited_ms=700)
    add(2_150, EventKind.BOT_STARTED_SPEAKING)
    add(2_150, EventKind.FIRST_BOT_AUDIO)  # the filler's audio
    add(2_900, EventKind.BOT_STOPPED_SPEAKING)
    add(3_400, EventKind.DELEGATION, phase="answered", delegation=1, waited_ms=2_100)
    add(3_600, EventKind.BOT_STARTED_SPEAKING)
    add(3_600, EventKind.FIRST_BOT_AUDIO)  # the answer's
    add(3_700, EventKind.ASSISTANT_TEXT, text="Forty two dollars.")
    (turn,) = timeline.turns()
    assert (turn.filler_ms, turn.first_audio_ms) == (2_150, 3_600)
    assert (turn.filler_latency_ms, turn.latency_ms) == (1_150, 2_600)
    assert turn.replied == "Forty two dollars."


def test_a_turn_with_no_filler_is_timed_as_before() -> None:
    timeline = Timeline()
    timeline.add(1_000, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(1_500, EventKind.FIRST_BOT_AUDIO)
    (turn,) = timeline.turns()
    assert (turn.filler_ms, turn.latency_ms, turn.filler_latency_ms) == (None, 500, None)


def test_delegation_events_have_timeline_lines() -> None:
    asked = delegation_entry(BackendAsked(1, joined=False))
    filler = delegation_entry(FillerSpoken(1, "One moment.", 702.04))
    answered = delegation_entry(BackendAnswered(1, 1_650.0, filled=True))
    assert asked == (EventKind.DELEGATION, {"phase": "asked", "delegation": 1, "joined": False})
    assert filler == (
        EventKind.FILLER,
        {"delegation": 1, "wording": "One moment.", "waited_ms": 702.0},
    )
    assert answered is not None and answered[1]["filled"] is True
    assert delegation_entry(object()) is None


def test_an_agent_file_carries_its_delegate_table() -> None:
    config = parse_agent_config({"delegate": {"backend": "local", "threshold_ms": 800}}, "a.toml")
    assert config.delegate == DelegationSettings(threshold_ms=800)
    assert parse_agent_config({}, "a.toml").delegate is None
    with pytest.raises(DelegationConfigError) as raised:
        parse_agent_config({"delegate": {"fillers": ["Hm."]}}, "a.toml")
    assert str(raised.value).startswith("a.toml: delegate.fillers:")


def test_the_report_times_the_answer_and_marks_the_filler_apart() -> None:
    from voxpipe.observability import CostLedger, RateLimitTracker, TurnStamps, budget
    from voxpipe.processors.observability.report import build_report

    timeline = Timeline()
    timeline.add(1_000, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(1_200, EventKind.USER_TRANSCRIPT, text="What is my balance?")
    timeline.add(2_000, EventKind.FILLER, delegation=1, wording="One moment.", waited_ms=700)
    timeline.add(2_150, EventKind.FIRST_BOT_AUDIO)
    timeline.add(3_600, EventKind.FIRST_BOT_AUDIO)
    timeline.add(3_700, EventKind.ASSISTANT_TEXT, text="Forty two dollars.")
    # The latency budget times the first audio the caller heard: the filler's.
    budgets = [budget(TurnStamps(1_000, None, None, 2_100, 2_150, None))]
    report = build_report(timeline, budgets, CostLedger(), RateLimitTracker(warn_below=0.2))
    (turn,) = report["turns"]
    assert turn["replied"] == "Forty two dollars."  # matched on the filler's audio
    assert (turn["answer_latency_ms"], turn["filler_latency_ms"]) == (2_600, 1_150)


def test_a_filler_due_while_the_caller_speaks_is_held_until_they_stop() -> None:
    policy = FillerPolicy()
    policy.delegated(0)
    policy.caller_started()  # at 300 ms the caller speaks again
    assert policy.due_at_ms() is None  # nothing to time while they speak
    assert policy.poll(700) is None and policy.poll(1_400) is None  # due, held
    said = policy.caller_stopped(1_500)
    assert said == FillerSpoken(1, DEFAULT_FILLERS[0], 1_500)  # said once they stop
    assert policy.poll(2_000) is None  # once per wait
    assert policy.answered(2_500) == BackendAnswered(1, 2_500, filled=True)


def test_a_held_filler_is_dropped_when_the_answer_comes_first() -> None:
    policy = FillerPolicy()
    policy.delegated(0)
    policy.caller_started()
    assert policy.poll(900) is None
    assert policy.answered(1_200) == BackendAnswered(1, 1_200, filled=False)
    assert policy.caller_stopped(1_400) is None  # the wait is over: nothing to say
    # The wording was not used up: the next wait's filler is the first one.
    policy.delegated(5_000)
    assert policy.poll(5_700) == FillerSpoken(2, DEFAULT_FILLERS[0], 700)


def test_a_caller_who_stops_before_the_threshold_changes_nothing() -> None:
    policy = FillerPolicy()
    policy.delegated(0)
    policy.caller_started()
    assert policy.caller_stopped(400) is None  # not due yet
    assert policy.due_at_ms() == 700
    assert policy.poll(700) == FillerSpoken(1, DEFAULT_FILLERS[0], 700)
