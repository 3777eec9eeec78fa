"""The policy-level call simulation behind benchmarks/rollover.py."""

from __future__ import annotations

import json

import pytest
from _simulation import (
    CallProfile,
    estimate_tokens,
    simulate_baseline,
    simulate_call,
)

from voxpipe.call.rollover import MINUTE_MS, RolloverConfig, RolloverReason


def short_cap(cap_min: int) -> RolloverConfig:
    return RolloverConfig(
        session_cap_ms=cap_min * MINUTE_MS, margin_ms=60_000, force_margin_ms=10_000
    )


@pytest.mark.parametrize(
    ("config", "min_rollovers", "max_rollovers"),
    [
        (RolloverConfig(), 1, 1),  # 60-minute call, 60-minute cap: one roll at 58 min
        (RolloverConfig(session_cap_ms=15 * MINUTE_MS), 4, 4),  # every 13 min
        (short_cap(5), 14, 15),  # cap shortened for the benchmark: every ~4 min
    ],
)
def test_sixty_minute_call_rolls_before_every_cap(
    config: RolloverConfig, min_rollovers: int, max_rollovers: int
) -> None:
    report = simulate_call(config)
    assert min_rollovers <= report.rollovers <= max_rollovers
    assert report.user_turns == 180 and report.user_turns_lost == 0
    assert report.context_losses == 0
    for session in report.sessions:
        assert session.ended_ms - session.started_ms < config.session_cap_ms
    assert all(s.ended_by is RolloverReason.SESSION_AGE for s in report.sessions[:-1])
    # Rolling between turns: no reply is delayed past the switch.
    assert report.max_bot_audio_gap_ms <= CallProfile().switch_ms


def test_pruning_keeps_context_small_and_beats_the_baseline() -> None:
    report = simulate_call()
    baseline = simulate_baseline()
    assert report.prunes >= 15
    assert max(s.peak_input_tokens for s in report.sessions) < 5_000
    assert max(s.peak_input_tokens for s in baseline.sessions) > 30_000
    assert report.total_input_tokens < baseline.total_input_tokens / 5


def test_baseline_loses_context_at_the_cap() -> None:
    baseline = simulate_baseline(short_cap(5))
    assert baseline.context_losses == 11
    assert baseline.rollovers == 0


def test_without_pruning_the_token_threshold_triggers_rollovers() -> None:
    config = RolloverConfig(prune_every_turns=10_000, max_input_tokens=8_000)
    report = simulate_call(config)
    reasons = {s.ended_by for s in report.sessions[:-1]}
    assert reasons == {RolloverReason.INPUT_TOKENS}
    assert report.rollovers >= 3
    # The threshold is checked after each reply; one more reply may pass it.
    assert all(s.peak_input_tokens < 8_000 + 500 for s in report.sessions)


def test_user_audio_during_a_switch_is_buffered_not_lost() -> None:
    # Turns start every 8 s and the bot talks for 7.5 s: a switch always
    # overlaps the next user turn.
    profile = CallProfile(
        duration_ms=20 * MINUTE_MS,
        turn_period_ms=8_000,
        bot_speech_ms=6_500,
        response_latency_ms=500,
        switch_ms=1_500,
    )
    report = simulate_call(short_cap(3), profile)
    assert report.rollovers >= 5
    assert report.user_turns_lost == 0
    assert report.user_turns_buffered >= 1


def test_a_switch_longer_than_the_buffer_loses_turns() -> None:
    profile = CallProfile(duration_ms=20 * MINUTE_MS, switch_ms=30_000, buffer_ms=1_000)
    report = simulate_call(short_cap(3), profile)
    assert report.user_turns_lost >= 1


def test_simulation_is_deterministic() -> None:
    assert simulate_call(short_cap(5)) == simulate_call(short_cap(5))


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2)])
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_report_is_json_ready() -> None:
    report = simulate_call(short_cap(5))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["rollovers"] == report.rollovers and data["user_turns_lost"] == 0
    assert data["sessions"][0]["ended_by"] == "session_age"
    assert sum(s["total_input_tokens"] for s in data["sessions"]) == report.total_input_tokens
