"""Failover policy: when a call leaves the realtime brain, and when it comes back (fake clock)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from voxpipe.call.failover import (
    REASK_STEM,
    Brain,
    FailoverConfig,
    FailoverPolicy,
    FallbackStart,
    PrepareFallback,
    ProbeRealtime,
    SwitchBrain,
    SwitchReason,
    fallback_start,
)
from voxpipe.call.probe import (
    CloseProbeSession,
    HealthProbe,
    OpenProbeSession,
    ProbeFinished,
    ProbeOutcome,
)
from voxpipe.call.recovery import NetworkFailed
from voxpipe.call.rollover import Role, SessionSeed, Turn
from voxpipe.errors import ConfigError

R = SwitchReason


def switches(commands: list[object]) -> list[SwitchBrain]:
    return [c for c in commands if isinstance(c, SwitchBrain)]


def on_chained(config: FailoverConfig | None = None, at_ms: int = 0) -> FailoverPolicy:
    policy = FailoverPolicy(config)
    assert switches(policy.gave_up(False, "budget spent", at_ms))
    assert policy.brain is Brain.CHAINED
    return policy


# -- away from realtime ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "reason"),
    [
        (lambda p: p.gave_up(False, "6 reconnects", 100), R.RECOVERY_EXHAUSTED),
        (lambda p: p.gave_up(True, "invalid_api_key", 100), R.FATAL_ERROR),
        (lambda p: p.provider_error("insufficient_quota", 100), R.QUOTA_EXHAUSTED),
        (lambda p: p.provider_error("billing_hard_limit_reached", 100), R.QUOTA_EXHAUSTED),
        (lambda p: p.rate_limits([(0, 60.0), (5, 1.0)], 100), R.RATE_LIMITED),
    ],
)
def test_errors_fatal_for_the_vendor_switch_at_once(feed, reason) -> None:
    policy = FailoverPolicy()
    out = switches(feed(policy))
    assert [(s.to, s.reason, s.at_ms) for s in out] == [(Brain.CHAINED, reason, 100)]
    assert policy.brain is Brain.CHAINED


def test_errors_the_realtime_brain_survives_do_not_switch() -> None:
    policy = FailoverPolicy()
    assert policy.provider_error("conversation_already_has_active_response", 0) == []
    assert policy.provider_error(None, 0) == []
    assert policy.rate_limits([(0, 2.0)], 0) == []  # a short reset: the retry waits for it
    assert policy.rate_limits([(3, 600.0)], 0) == []  # not exhausted
    assert policy.brain is Brain.REALTIME


def test_a_storm_of_server_errors_switches_but_scattered_ones_do_not() -> None:
    config = FailoverConfig(server_storm=3, server_storm_window_ms=30_000)
    scattered = FailoverPolicy(config)
    for t in (0, 20_000, 40_000, 60_000):  # never three within 30 s
        assert scattered.provider_error("server_error", t) == []
    storm = FailoverPolicy(config)
    assert storm.provider_error("server_error", 0) == []
    assert storm.provider_error("internal_error", 1_000) == []
    out = switches(storm.provider_error("service_unavailable", 2_000))
    assert [(s.reason, s.detail) for s in out] == [(R.SERVER_ERRORS, "3 server errors in 30 s")]


def test_a_response_with_no_audio_by_the_deadline_switches() -> None:
    policy = FailoverPolicy(FailoverConfig(first_audio_deadline_ms=2_000))
    policy.response_started(10_000)
    assert policy.tick(10_999) == []
    assert policy.tick(11_000) == [
        PrepareFallback(11_000, due_ms=12_000)
    ]  # half way: get the answer ready
    assert policy.tick(11_999) == []  # once
    out = switches(policy.tick(12_000))
    assert [(s.reason, s.at_ms) for s in out] == [(R.FIRST_AUDIO_LATE, 12_000)]


def test_audio_in_time_and_a_finished_response_owe_nothing() -> None:
    policy = FailoverPolicy(FailoverConfig(first_audio_deadline_ms=2_000))
    policy.response_started(0)
    policy.audio_played(1_500)
    assert policy.tick(2_400) == []
    assert policy.tick(3_000) == [
        PrepareFallback(3_000, due_ms=3_500)
    ]  # 1.5 s since the last audio
    assert policy.response_ended(3_100) == [PrepareFallback(3_100, ready=False)]
    assert policy.tick(60_000) == []
    assert policy.brain is Brain.REALTIME


def test_a_reply_that_goes_silent_mid_way_is_a_stall() -> None:
    policy = FailoverPolicy(FailoverConfig(first_audio_deadline_ms=9_000, stall_ms=1_500))
    policy.response_started(0)
    assert policy.tick(4_000) == []  # the first audio may take up to 9 s
    assert policy.tick(8_000) == [PrepareFallback(8_000, due_ms=9_000)]
    assert policy.audio_played(8_500) == [PrepareFallback(8_500, ready=False)]
    assert policy.tick(9_000) == []
    assert policy.tick(9_999) == [
        PrepareFallback(9_999, due_ms=10_000)
    ]  # half the stall limit: again
    out = switches(policy.tick(10_000))
    assert [(s.reason, s.detail) for s in out] == [(R.AUDIO_STALLED, "no reply audio for 1500 ms")]


def test_a_prepared_answer_is_the_switchs_and_no_drop_follows_it() -> None:
    policy = FailoverPolicy(FailoverConfig(stall_ms=2_000))
    policy.response_started(0)
    policy.audio_played(100)
    assert policy.tick(1_100) == [PrepareFallback(1_100, due_ms=2_100)]
    assert [type(c) for c in policy.tick(2_100)] == [SwitchBrain]
    assert policy.response_ended(2_200) == []  # the switch took it: nothing to drop
    assert not [c for c in policy.tick(10_000) if isinstance(c, PrepareFallback)]


def test_a_switch_away_happens_once_and_later_signals_change_nothing() -> None:
    policy = on_chained()
    assert policy.gave_up(True, "again", 10) == []
    assert policy.provider_error("insufficient_quota", 20) == []
    policy.response_started(30)
    assert [c for c in policy.tick(10_000) if isinstance(c, SwitchBrain)] == []
    assert len(policy.switches) == 1


# -- back to realtime ---------------------------------------------------------------


def run_clock(
    policy: FailoverPolicy,
    until_ms: int,
    *,
    healthy: bool = True,
    listening_at: set[int] | None = None,
    step_ms: int = 500,
) -> list[SwitchBrain]:
    """Tick every ``step_ms``; answer each probe at once; the call listens when asked."""
    seen: list[SwitchBrain] = []
    t = 0
    while t <= until_ms:
        if listening_at is None:
            commands = policy.tick(t)
        else:  # a change of the floor ticks the policy too
            commands = policy.listening(t in listening_at, t)
        for command in commands:
            if isinstance(command, ProbeRealtime):
                seen += switches(policy.probe_finished(healthy, t))
            elif isinstance(command, SwitchBrain):
                seen.append(command)
        t += step_ms
    return seen


def test_switch_back_waits_for_the_cooldown_and_enough_healthy_probes() -> None:
    config = FailoverConfig(cooldown_ms=60_000, probe_interval_ms=10_000, probes_needed=2)
    policy = on_chained(config)
    assert policy.next_switch_back_ms() == 60_000
    back = run_clock(policy, 120_000)
    assert [(s.to, s.reason, s.at_ms) for s in back] == [
        (Brain.REALTIME, R.REALTIME_HEALTHY, 60_000)
    ]


def test_unhealthy_probes_keep_the_call_on_the_fallback() -> None:
    policy = on_chained(FailoverConfig(cooldown_ms=10_000, probe_interval_ms=2_000))
    assert run_clock(policy, 120_000, healthy=False) == []
    assert policy.brain is Brain.CHAINED


def test_switch_back_only_while_listening() -> None:
    config = FailoverConfig(cooldown_ms=10_000, probe_interval_ms=1_000, probes_needed=1)
    policy = on_chained(config)
    # The caller and the bot hold the floor until 30 s: no switch mid-turn.
    back = run_clock(policy, 40_000, listening_at={30_000, 30_500})
    assert [s.at_ms for s in back] == [30_000]


def test_no_switch_back_can_be_set_off() -> None:
    policy = on_chained(FailoverConfig(switch_back=False))
    commands: list[object] = []
    for t in range(0, 3_600_000, 10_000):
        commands += policy.tick(t)
    assert commands == []
    assert policy.next_switch_back_ms() is None


def test_a_flapping_brain_never_switches_twice_within_a_cooldown() -> None:
    """Realtime fails 5 s after every switch back; probes always pass."""
    config = FailoverConfig(cooldown_ms=20_000, probe_interval_ms=2_000, max_cooldown_ms=160_000)
    policy = FailoverPolicy(config)
    history = switches(policy.gave_up(False, "budget", 0))
    t = 0
    while t < 1_000_000:
        t += 500
        for command in policy.tick(t):
            if isinstance(command, ProbeRealtime):
                history += switches(policy.probe_finished(True, t))
            elif isinstance(command, SwitchBrain):
                history.append(command)
        if policy.brain is Brain.REALTIME and t - history[-1].at_ms >= 5_000:
            history += switches(policy.gave_up(False, "again", t))
    backs = [s for s in history if s.to is Brain.REALTIME]
    assert len(backs) >= 3
    for earlier, later in itertools.pairwise(history):
        if later.to is Brain.REALTIME:  # a switch back waits a (growing) cooldown
            assert later.at_ms - earlier.at_ms >= config.cooldown_ms
    gaps = [b.at_ms - a.at_ms for a, b in itertools.pairwise(history)]
    back_gaps = [g for g, s in zip(gaps, history[1:], strict=False) if s.to is Brain.REALTIME]
    assert back_gaps == sorted(back_gaps) and back_gaps[-1] == config.max_cooldown_ms
    assert policy.cooldown_ms == config.max_cooldown_ms


def test_time_on_each_brain() -> None:
    policy = FailoverPolicy(FailoverConfig(cooldown_ms=10_000, probes_needed=1))
    policy.gave_up(False, "x", 4_000)
    assert policy.time_on(Brain.REALTIME, 9_000) == 4_000
    assert policy.time_on(Brain.CHAINED, 9_000) == 5_000


def test_bad_settings_are_refused() -> None:
    for bad in (
        {"first_audio_deadline_ms": 0},
        {"stall_ms": -1},
        {"reconnects": 0},
        {"probes_needed": 0},
        {"cooldown_ms": 10, "max_cooldown_ms": 5},
    ):
        with pytest.raises(ConfigError):
            FailoverConfig(**bad)


# -- the probe carries no caller data ------------------------------------------------


def test_a_probe_opens_and_closes_and_sends_nothing() -> None:
    probe = HealthProbe(timeout_ms=3_000)
    commands = probe.start(0)
    commands += probe.server_event("session.created", None, 120)
    assert commands == [
        OpenProbeSession(),
        CloseProbeSession(),
        ProbeFinished(ProbeOutcome.HEALTHY, "session created", 120),
    ]
    # No command has anything to carry: no audio, no text, no replayed request.
    carried = [
        f.name for c in commands if not isinstance(c, ProbeFinished) for f in dataclasses.fields(c)
    ]
    assert carried == []
    assert [f.name for f in dataclasses.fields(ProbeRealtime)] == ["at_ms"]


@pytest.mark.parametrize(
    ("feed", "outcome"),
    [
        (lambda p: p.failed(NetworkFailed("connection refused"), 50), ProbeOutcome.REFUSED),
        (lambda p: p.server_event("error", "invalid_api_key", 50), ProbeOutcome.ERRORED),
        (lambda p: p.tick(3_000), ProbeOutcome.TIMED_OUT),
    ],
)
def test_a_probe_that_does_not_get_a_session_is_unhealthy(feed, outcome) -> None:
    probe = HealthProbe(timeout_ms=3_000)
    probe.start(0)
    assert probe.tick(2_999) == []
    out = feed(probe)
    finished = [c for c in out if isinstance(c, ProbeFinished)]
    assert [(f.outcome, f.healthy) for f in finished] == [(outcome, False)]
    assert probe.server_event("session.created", None, 4_000) == []  # a late answer: over


# -- what the chained brain starts from ------------------------------------------------

HEARD_SEED = SessionSeed(
    "The caller asked about opening hours.",
    (
        Turn(Role.USER, "What is the capital of Italy?"),
        Turn(Role.ASSISTANT, "The capital of (interrupted)"),
    ),
    {"get_hours": "nine to five"},
)


def test_the_fallback_starts_from_the_heard_turns_with_the_summary_in_its_instructions() -> None:
    start = fallback_start(HEARD_SEED, "Be brief.")
    assert start.messages == (
        {"role": "user", "content": "What is the capital of Italy?"},
        {"role": "assistant", "content": "The capital of (interrupted)"},
    )
    assert start.instructions.startswith("Be brief.")
    assert "opening hours" in start.instructions and "nine to five" in start.instructions
    assert start.reask_note == "" and start.reask_instructions == start.instructions


def test_a_reask_ends_the_context_on_the_question_and_says_what_was_heard() -> None:
    start = fallback_start(HEARD_SEED, "Be brief.", reask=True)
    assert start.messages == ({"role": "user", "content": "What is the capital of Italy?"},)
    assert 'They heard you say "The capital of"' in start.reask_note
    assert start.reask_note.startswith(REASK_STEM)  # the warmed prefix, then what was heard
    assert start.reask_instructions.startswith(start.instructions)
    assert "Answer it again" in start.reask_instructions
    assert "Answer it again" not in start.instructions  # for the one reply only


def test_a_reask_with_nothing_heard_and_no_seed() -> None:
    seed = SessionSeed("", (Turn(Role.USER, "Hello?"),), {})
    start = fallback_start(seed, "Be brief.", reask=True)
    assert start.messages == ({"role": "user", "content": "Hello?"},)
    assert "heard" not in start.reask_note and start.reask_note
    assert fallback_start(None, "Be brief.") == FallbackStart("Be brief.", ())
