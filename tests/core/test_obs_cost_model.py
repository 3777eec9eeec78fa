"""The call cost model and ``voxpipe cost``: the table a buyer decides on."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from voxpipe.call.rollover import RolloverConfig
from voxpipe.cli import main
from voxpipe.errors import ConfigError
from voxpipe.observability.cost_model import CallAssumptions, model_call
from voxpipe.observability.prices import DEFAULT_PRICE_TABLE, ModelPrices, TokenCounts

PRICES = DEFAULT_PRICE_TABLE.lookup("gpt-realtime")
assert PRICES is not None
GPT_REALTIME: ModelPrices = PRICES


def _usd(
    minutes: float,
    assumptions: CallAssumptions | None = None,
    rollover: RolloverConfig | None = None,
) -> Decimal:
    return model_call(minutes, GPT_REALTIME, assumptions, rollover).usd


@pytest.mark.parametrize(("minutes", "published_growth"), [(5, 0.92 / 0.11), (15, 5.28 / 0.11)])
def test_naive_growth_has_the_shape_of_the_published_estimates(
    minutes: float, published_growth: float
) -> None:
    growth = float(_usd(minutes) / _usd(1))
    assert growth == pytest.approx(published_growth, rel=0.10)


def test_one_response_costs_what_a_hand_calculation_says() -> None:
    # 1 turn: 60 user audio tokens in, 500 instruction tokens, 140 audio + 21 text out.
    estimate = model_call(0.25, GPT_REALTIME)
    assert estimate.responses == 1
    assert estimate.tokens == TokenCounts(audio_in=60, text_in=500, audio_out=140, text_out=21)
    assert estimate.usd == Decimal("0.013216")  # (60*32 + 500*4 + 140*64 + 21*16) / 1e6


def test_second_response_rereads_the_first_turn_partly_from_cache() -> None:
    tokens = model_call(0.5, GPT_REALTIME).tokens
    # Re-read: 500 instructions + 200 audio of turn 1; 85% cached.
    assert tokens.cached_audio_in == 170
    assert tokens.audio_in == 30 + 60 + 60
    assert tokens.cached_text_in == 425


def test_without_cache_hits_the_same_call_costs_more() -> None:
    cold = CallAssumptions(cache_hit_fraction=0.0)
    assert _usd(15, assumptions=cold) > 2 * _usd(15)


@pytest.mark.parametrize(("minutes", "prunes", "rollovers"), [(5, 2, 0), (15, 6, 0), (60, 23, 1)])
def test_voxpipe_rollover_prunes_and_rolls_over_and_saves_money(
    minutes: float, prunes: int, rollovers: int
) -> None:
    # Defaults: prune every 10 user turns (4 a minute); roll over 2 minutes before the
    # 60-minute cap (the input never reaches max_input_tokens with pruning on).
    estimate = model_call(minutes, GPT_REALTIME, rollover=RolloverConfig())
    assert (estimate.prunes, estimate.rollovers) == (prunes, rollovers)
    assert estimate.usd < _usd(minutes)


def test_rollover_turns_quadratic_growth_into_linear() -> None:
    rollover = RolloverConfig()
    naive_ratio = _usd(60) / _usd(30)
    rolled_ratio = _usd(60, rollover=rollover) / _usd(30, rollover=rollover)
    assert naive_ratio > Decimal("3.5")
    assert rolled_ratio == pytest.approx(Decimal(2), rel=Decimal("0.1"))


def test_input_token_threshold_triggers_a_rollover_without_pruning() -> None:
    # Pruning effectively off: the conversation grows until max_input_tokens.
    config = RolloverConfig(prune_every_turns=10_000, max_input_tokens=5_000)
    estimate = model_call(15, GPT_REALTIME, rollover=config)
    assert estimate.prunes == 0
    assert estimate.rollovers >= 2
    assert estimate.usd < _usd(15)


def test_short_call_under_the_bounds_never_prunes() -> None:
    estimate = model_call(1, GPT_REALTIME, rollover=RolloverConfig())
    assert (estimate.prunes, estimate.rollovers) == (0, 0)
    assert estimate.usd == _usd(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"turns_per_minute": 0},
        {"cache_hit_fraction": 1.5},
        {"turns_per_minute": 10, "user_seconds_per_turn": 5, "bot_seconds_per_turn": 5},
    ],
)
def test_impossible_assumptions_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CallAssumptions(**kwargs)


def test_cli_prints_assumptions_and_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["cost", "--minutes", "1,5,15", "--rollover", "default"]
    assert main([*argv, "--rollover", "prune_every_turns=5"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "10 in",
        "20 out",
        "$32 / $0.40 / $64",
        "85%",
        "voxpipe rollover (defaults)",
        "prune_every_turns=5",
        "5.28",
        "7.9x (8.4x)",
    ):
        assert expected in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cost", "--model", "my-brain"], "cost unknown"),
        (["cost", "--minutes", "five"], "--minutes"),
        (["cost", "--rollover", "prune_evry_turns=3"], "unknown setting"),
        (["cost", "--rollover", "keep_verbatim_turns=many"], "whole number"),
        (["cost", "--rollover", "prune_every_turns=0"], "prune_every_turns must be >= 1"),
    ],
)
def test_cli_errors_say_what_was_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cost_command_stays_cheap_to_start() -> None:
    # The openai package alone takes about a second to import.
    code = "import sys, voxpipe.cli.cost; print(sorted({'openai', 'pipecat'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_cli_can_print_the_naive_case_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--minutes", "1,15", "--rollover", "none"]) == 0
    out = capsys.readouterr().out
    assert "voxpipe rollover" not in out
    assert "$2.52" in out
