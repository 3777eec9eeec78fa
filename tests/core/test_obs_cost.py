"""Price table and per-response cost: what a user reads on the bill."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from voxpipe.observability.cost import CostLedger, UsageIssue, parse_usage, price_response
from voxpipe.observability.prices import (
    DEFAULT_PRICE_TABLE,
    TokenCounts,
    TokenKind,
    UnknownCost,
)

FULL_USAGE: dict[str, Any] = {
    "input_tokens": 1300,
    "output_tokens": 560,
    "total_tokens": 1860,
    "input_token_details": {
        "audio_tokens": 1000,
        "text_tokens": 300,
        "cached_tokens": 800,
        "cached_tokens_details": {"audio_tokens": 600, "text_tokens": 200},
    },
    "output_token_details": {"audio_tokens": 500, "text_tokens": 60},
}
# By hand at gpt-realtime prices (USD per 1M): 400*32 + 600*0.40 + 100*4 + 200*0.40
# + 500*64 + 60*16 = 12800 + 240 + 400 + 80 + 32000 + 960 = 46480 -> $0.04648
FULL_USAGE_USD = Decimal("0.04648")


@pytest.mark.parametrize(
    ("kind", "usd"),
    [
        (TokenKind.AUDIO_IN, "32"),
        (TokenKind.CACHED_AUDIO_IN, "0.40"),
        (TokenKind.AUDIO_OUT, "64"),
        (TokenKind.TEXT_IN, "4"),
        (TokenKind.CACHED_TEXT_IN, "0.40"),
        (TokenKind.TEXT_OUT, "16"),
    ],
)
def test_default_table_has_published_gpt_realtime_prices(kind: TokenKind, usd: str) -> None:
    prices = DEFAULT_PRICE_TABLE.lookup("gpt-realtime")
    assert prices is not None
    assert prices.per_million(kind) == Decimal(usd)


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("gpt-realtime", True),
        ("gpt-realtime-2025-08-28", True),
        ("gpt-realtime-mini-2025-10-06", True),
        ("gpt-realtime-large", False),
        ("local-brain", False),
    ],
)
def test_snapshot_names_price_like_their_alias_and_strangers_are_unknown(
    model: str, known: bool
) -> None:
    cost = DEFAULT_PRICE_TABLE.cost(model, TokenCounts(audio_out=1000))
    assert isinstance(cost, Decimal) is known
    if not known:
        assert isinstance(cost, UnknownCost)
        assert model in str(cost)


def test_full_usage_costs_what_a_hand_calculation_says() -> None:
    cost = price_response("resp_1", FULL_USAGE)
    assert cost.usd == FULL_USAGE_USD
    assert cost.issues == frozenset()
    assert not cost.is_upper_bound
    assert cost.counts == TokenCounts(400, 600, 500, 100, 200, 60)


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    usage: dict[str, Any] = {
        k: dict(v) if isinstance(v, dict) else v for k, v in FULL_USAGE.items()
    }
    node = usage
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return usage


@pytest.mark.parametrize(
    ("path", "issue", "counts"),
    [
        # Split unknown: everything priced as (dearer) audio.
        (
            ("input_token_details",),
            UsageIssue.INPUT_DETAILS_MISSING,
            TokenCounts(1300, 0, 500, 0, 0, 60),
        ),
        (
            ("output_token_details",),
            UsageIssue.OUTPUT_DETAILS_MISSING,
            TokenCounts(400, 600, 560, 100, 200, 0),
        ),
        # Cached split unknown: the 800 cached credit text (300) first, then audio.
        (
            ("input_token_details", "cached_tokens_details"),
            UsageIssue.CACHED_DETAILS_MISSING,
            TokenCounts(500, 500, 500, 0, 300, 60),
        ),
        # Text count missing: the 300 the total implies go to audio.
        (
            ("input_token_details", "text_tokens"),
            UsageIssue.TOTALS_DISAGREE,
            TokenCounts(700, 600, 500, 0, 0, 60),
        ),
    ],
)
def test_missing_fields_are_flagged_and_priced_high_not_dropped(
    path: tuple[str, ...], issue: UsageIssue, counts: TokenCounts
) -> None:
    cost = price_response("resp_1", _without(path))
    assert issue in cost.issues
    assert cost.is_upper_bound
    assert cost.counts == counts
    assert isinstance(cost.usd, Decimal)
    assert cost.usd >= FULL_USAGE_USD


def test_no_usage_is_unknown_cost_not_zero() -> None:
    cost = price_response("resp_1", None)
    assert isinstance(cost.usd, UnknownCost)
    assert cost.issues == frozenset({UsageIssue.NO_USAGE})


def test_empty_usage_of_a_cancelled_response_costs_zero_without_flags() -> None:
    parsed = parse_usage({})
    assert parsed.counts.total == 0
    assert parsed.issues == frozenset()


def test_ledger_keeps_a_running_total_and_counts_what_it_could_not_price() -> None:
    ledger = CostLedger()
    ledger.record("resp_1", FULL_USAGE)
    ledger.record("resp_2", FULL_USAGE)
    assert ledger.total.known_usd == 2 * FULL_USAGE_USD
    assert ledger.total.is_complete
    ledger.record("resp_3", None)
    ledger.record("resp_4", _without(("output_token_details",)))
    total = ledger.total
    assert not total.is_complete
    assert total.unknown_responses == 1
    assert total.upper_bound_responses == 1
    assert ledger.tokens.audio_out == 3 * 500 + 60


def test_ledger_for_an_unpriced_model_never_reports_zero() -> None:
    ledger = CostLedger(model="my-local-brain")
    ledger.record("resp_1", FULL_USAGE)
    assert ledger.total.unknown_responses == 1
    assert ledger.total.known_usd == 0
    assert not ledger.total.is_complete


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "lots"},
        {"input_token_details": ["not", "a", "table"]},
        {"output_tokens": {"audio": 5}},
    ],
)
def test_malformed_usage_is_unknown_cost_not_a_crash(usage: dict[str, Any]) -> None:
    cost = price_response("resp_1", usage)
    assert isinstance(cost.usd, UnknownCost)
    assert UsageIssue.MALFORMED in cost.issues


def test_negative_counts_are_flagged_and_never_reduce_the_bill() -> None:
    usage = {
        "output_tokens": -100,
        "output_token_details": {"audio_tokens": -100, "text_tokens": 0},
    }
    cost = price_response("resp_1", usage)
    assert UsageIssue.NEGATIVE_COUNT in cost.issues
    assert cost.usd == 0
    assert cost.is_upper_bound


def test_details_without_totals_are_not_called_inconsistent() -> None:
    usage = {"output_token_details": {"audio_tokens": 100, "text_tokens": 10}}
    cost = price_response("resp_1", usage)
    assert cost.issues == frozenset()
    assert cost.counts == TokenCounts(audio_out=100, text_out=10)
