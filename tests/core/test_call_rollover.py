"""Rollover policy, pruning cadence, and what seeds the next session."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from voxpipe.call.rollover import (
    MINUTE_MS,
    CallMemory,
    ExtractiveSummariser,
    PruneDue,
    Role,
    RolloverConfig,
    RolloverDue,
    RolloverPolicy,
    RolloverReason,
    SessionSeed,
    Turn,
    build_seed,
    plan_seed,
)
from voxpipe.errors import ConfigError


def policy(**overrides: int) -> RolloverPolicy:
    p = RolloverPolicy(RolloverConfig(**overrides))
    p.on_session_started(1_000)
    return p


@pytest.mark.parametrize(
    ("cap_min", "age_ms", "idle", "tokens", "expected"),
    [
        (60, 57 * MINUTE_MS, True, 0, None),
        (60, 58 * MINUTE_MS, True, 0, RolloverReason.SESSION_AGE),
        (60, 58 * MINUTE_MS, False, 0, None),  # wait for the turn to end
        (60, 59 * MINUTE_MS + 30_000, False, 0, RolloverReason.FORCED),
        (15, 13 * MINUTE_MS, True, 0, RolloverReason.SESSION_AGE),
        (30, 27 * MINUTE_MS, True, 0, None),
        (30, 28 * MINUTE_MS, True, 0, RolloverReason.SESSION_AGE),
        (60, 5 * MINUTE_MS, True, 19_999, None),
        (60, 5 * MINUTE_MS, True, 20_000, RolloverReason.INPUT_TOKENS),
        (60, 5 * MINUTE_MS, False, 25_000, None),  # size alone never interrupts a turn
    ],
)
def test_when_to_roll(
    cap_min: int, age_ms: int, idle: bool, tokens: int, expected: RolloverReason | None
) -> None:
    p = policy(session_cap_ms=cap_min * MINUTE_MS)
    p.on_response_done(tokens)
    decision = p.check(1_000 + age_ms, idle=idle)
    if expected is None:
        assert decision is None
    else:
        assert decision == RolloverDue(expected, age_ms, tokens)


def test_deadline_and_reset_on_new_session() -> None:
    p = policy()
    assert p.next_deadline_ms() == 1_000 + 58 * MINUTE_MS
    p.on_response_done(30_000)
    p.on_session_started(10 * MINUTE_MS)
    assert p.input_tokens == 0
    assert p.check(11 * MINUTE_MS, idle=True) is None
    assert p.next_deadline_ms() == 68 * MINUTE_MS


@pytest.mark.parametrize(
    "overrides",
    [
        {"margin_ms": 60 * MINUTE_MS},
        {"force_margin_ms": 3 * MINUTE_MS},
        {"prune_every_turns": 0},
        {"keep_verbatim_turns": -1},
    ],
)
def test_bad_config_is_a_config_error(overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        RolloverConfig(**overrides)


def test_prune_cadence() -> None:
    p = policy(prune_every_turns=3)
    results = [p.on_user_turn() for _ in range(7)]
    assert results == [None, None, PruneDue(3), None, None, PruneDue(6), None]


def turns(n: int) -> list[Turn]:
    return [
        Turn(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"turn {i}", f"item_{i}", True)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("n", "keep", "summarised", "verbatim"),
    [(10, 4, 6, 4), (3, 4, 0, 3), (5, 0, 5, 0), (0, 6, 0, 0)],
)
def test_plan_seed_split(n: int, keep: int, summarised: int, verbatim: int) -> None:
    plan = plan_seed(turns(n), keep)
    assert (len(plan.to_summarise), len(plan.verbatim)) == (summarised, verbatim)
    assert plan.replaced_item_ids == tuple(f"item_{i}" for i in range(summarised))


@pytest.mark.parametrize(
    ("turns_in", "previous", "expected"),
    [
        (
            [Turn(Role.USER, "I need a taxi"), Turn(Role.ASSISTANT, "Where to?")],
            None,
            "user: I need a taxi\nassistant: Where to?",
        ),
        (
            [Turn(Role.USER, "  to   the\nstation ")],
            "user: I need a taxi",
            "user: I need a taxi\nuser: to the station",
        ),
        ([Turn(Role.USER, "x" * 50)], None, "user: " + "x" * 19 + "…"),
        ([Turn(Role.TOOL, "")], None, ""),
    ],
)
def test_extractive_summary(turns_in: Sequence[Turn], previous: str | None, expected: str) -> None:
    assert ExtractiveSummariser(max_turn_chars=20).summarise(turns_in, previous) == expected


def test_extractive_summary_drops_oldest_when_over_budget() -> None:
    s = ExtractiveSummariser(max_chars=40)
    text = s.summarise([Turn(Role.USER, f"line number {i}") for i in range(10)], None)
    assert len(text) <= 40
    assert text.endswith("user: line number 9")
    assert "line number 0" not in text


class UpperSummariser:
    """Stands in for a model-based summariser plugged in by the application."""

    def summarise(self, turns: Sequence[Turn], previous_summary: str | None) -> str:
        return " | ".join(t.text.upper() for t in turns)


def test_seed_with_pluggable_summariser_and_tool_state() -> None:
    seed = build_seed(
        turns(5),
        keep_verbatim_turns=2,
        summariser=UpperSummariser(),
        tool_state={"booking": "confirmed #42", "city": "Lyon"},
    )
    assert seed.summary == "TURN 0 | TURN 1 | TURN 2"
    assert [t.text for t in seed.verbatim] == ["turn 3", "turn 4"]
    text = seed.instructions("You are a taxi dispatcher.\n")
    assert text.startswith("You are a taxi dispatcher.\n\nSummary of the conversation so far:")
    assert "- booking: confirmed #42\n- city: Lyon" in text


def test_seed_instructions_without_summary_is_the_base() -> None:
    assert SessionSeed("", (), {}).instructions("Be brief.") == "Be brief."


def test_call_memory_folds_old_turns_and_keeps_every_user_turn() -> None:
    memory = CallMemory()
    for t in turns(8):
        memory.add(t)
    plan = memory.prune(keep_verbatim_turns=3)
    assert plan.replaced_item_ids == tuple(f"item_{i}" for i in range(5))
    assert [t.text for t in memory.turns] == ["turn 5", "turn 6", "turn 7"]
    for t in turns(12)[8:]:
        memory.add(t)
    memory.tool_state["order"] = "open"
    seed = memory.seed(keep_verbatim_turns=2)
    said = seed.summary + "\n" + "\n".join(t.text for t in seed.verbatim)
    # No turn is lost: each lives in the summary or verbatim.
    assert all(f"turn {i}" in said for i in range(12))
    assert seed.tool_state == {"order": "open"}
    assert memory.prune(keep_verbatim_turns=2).to_summarise == ()
