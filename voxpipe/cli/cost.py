"""``voxpipe cost``: how a call's cost grows with its length, with and without rollover.

``--rollover`` takes voxpipe's rollover settings (the fields of
:class:`~voxpipe.call.rollover.RolloverConfig`): ``default`` for the shipped
ones, ``key=value,...`` to override some, or ``none``. Repeat it to compare
several settings side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from voxpipe.call.rollover import RolloverConfig
from voxpipe.cli import summary
from voxpipe.errors import ConfigError
from voxpipe.observability.cost_model import CallAssumptions, CallEstimate, model_call
from voxpipe.observability.prices import (
    DEFAULT_MODEL,
    DEFAULT_PRICE_TABLE,
    ModelPrices,
    TokenCounts,
)

# Community estimates for a naive Realtime call (whole history re-read every
# response). Shown next to the model so the reader can compare the shape.
PUBLISHED_USD: dict[float, str] = {1: "0.11", 5: "0.92", 15: "5.28"}
_ROLLOVER_FIELDS = tuple(f.name for f in dataclasses.fields(RolloverConfig))


def add_parser(subparsers: Any) -> None:
    defaults = CallAssumptions()
    parser = subparsers.add_parser("cost", help=summary("cost"))
    parser.add_argument("--minutes", default="1,5,15,60", help="call lengths, comma separated")
    parser.add_argument(
        "--rollover",
        action="append",
        metavar="SETTINGS",
        help="'default', 'none' or overrides such as prune_every_turns=5,keep_verbatim_turns=4"
        f" (fields: {', '.join(_ROLLOVER_FIELDS)}); repeat to compare",
    )
    parser.add_argument("--summary-tokens", type=int, default=defaults.summary_tokens)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--turns-per-minute", type=float, default=defaults.turns_per_minute)
    parser.add_argument("--user-seconds", type=float, default=defaults.user_seconds_per_turn)
    parser.add_argument("--bot-seconds", type=float, default=defaults.bot_seconds_per_turn)
    parser.add_argument("--cache-hit", type=float, default=defaults.cache_hit_fraction)
    parser.add_argument("--instructions-tokens", type=int, default=defaults.instructions_tokens)
    parser.set_defaults(func=run)


def _minutes(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--minutes takes numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--minutes needs positive numbers, got {text!r}")
    return values


def _rollover(text: str) -> RolloverConfig | None:
    """One ``--rollover`` value as voxpipe's rollover settings (``None`` for 'none')."""
    text = text.strip()
    if text.lower() == "none":
        return None
    if text.lower() == "default":
        return RolloverConfig()
    overrides: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in _ROLLOVER_FIELDS:
            raise ConfigError(
                f"--rollover: unknown setting {key!r}", hint="known: " + ", ".join(_ROLLOVER_FIELDS)
            )
        try:
            overrides[key] = int(value)
        except ValueError:
            raise ConfigError(f"--rollover: {key} needs a whole number, got {value!r}") from None
    return dataclasses.replace(RolloverConfig(), **overrides)


def _assumptions(args: argparse.Namespace) -> CallAssumptions:
    return CallAssumptions(
        turns_per_minute=args.turns_per_minute,
        user_seconds_per_turn=args.user_seconds,
        bot_seconds_per_turn=args.bot_seconds,
        cache_hit_fraction=args.cache_hit,
        instructions_tokens=args.instructions_tokens,
        summary_tokens=args.summary_tokens,
    )


def _assumption_table(a: CallAssumptions, prices: ModelPrices, version: str) -> Table:
    table = Table(title="Assumptions", show_header=False)
    rows = [
        ("model / price table", f"{prices.model} / {version}"),
        ("audio in / cached / out", f"${prices.audio_in} / ${prices.cached_audio_in} / "
         f"${prices.audio_out} per 1M tokens"),
        ("text in / cached / out", f"${prices.text_in} / ${prices.cached_text_in} / "
         f"${prices.text_out} per 1M tokens"),
        ("turns per minute", f"{a.turns_per_minute:g}"),
        ("speech per turn", f"user {a.user_seconds_per_turn:g} s, "
         f"bot {a.bot_seconds_per_turn:g} s"),
        ("audio tokens per second", f"user {a.user_audio_tokens_per_s:g} in, "
         f"bot {a.bot_audio_tokens_per_s:g} out (published)"),
        ("transcript text tokens/s", f"user {a.user_text_tokens_per_s:g}, "
         f"bot {a.bot_text_tokens_per_s:g} (bot's billed as text out)"),
        ("instructions", f"{a.instructions_tokens} text tokens, re-read every response"),
        ("history", "every response re-reads every earlier item"),
        ("cached share of re-read", f"{a.cache_hit_fraction:.0%} (cold after a prune/rollover)"),
        ("rollover summary", f"{a.summary_tokens} text tokens, extractive (no model call)"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.3f}"


def _growth(usd: Decimal, one_minute: Decimal, minutes: float) -> str:
    published = PUBLISHED_USD.get(minutes)
    model = f"{usd / one_minute:.1f}x" if one_minute else "-"
    if published is None:
        return model
    return f"{model} ({Decimal(published) / Decimal(PUBLISHED_USD[1]):.1f}x)"


def _label(config: RolloverConfig) -> str:
    changed = [
        f"{name}={getattr(config, name)}"
        for name in _ROLLOVER_FIELDS
        if getattr(config, name) != getattr(RolloverConfig(), name)
    ]
    return "voxpipe rollover" + (f" ({', '.join(changed)})" if changed else " (defaults)")


def _result_table(
    naive: list[CallEstimate], rolled: list[tuple[str, list[CallEstimate]]], one_minute: Decimal
) -> Table:
    table = Table(title="Modelled call cost (USD)")
    headers = ("minutes", "responses", "naive", "naive $/min", "growth vs 1 min (published)")
    for header in (*headers, "published (naive)"):
        table.add_column(header, justify="right")
    for label, _ in rolled:
        table.add_column(f"{label}\n(prunes/rollovers)", justify="right")
        table.add_column("saved", justify="right")
    for i, estimate in enumerate(naive):
        row = [
            f"{estimate.minutes:g}",
            str(estimate.responses),
            _usd(estimate.usd),
            _usd(estimate.usd / Decimal(str(estimate.minutes))),
            _growth(estimate.usd, one_minute, estimate.minutes),
            PUBLISHED_USD.get(estimate.minutes, "-"),
        ]
        for _, estimates in rolled:
            other = estimates[i]
            saved = 1 - other.usd / estimate.usd if estimate.usd else Decimal(0)
            row += [f"{_usd(other.usd)} ({other.prunes}/{other.rollovers})", f"{saved:.0%}"]
        table.add_row(*row)
    return table


def run(args: argparse.Namespace) -> int:
    """Print the assumptions and the naive vs rollover cost table."""
    prices = DEFAULT_PRICE_TABLE.lookup(args.model)
    if prices is None:
        raise ConfigError(
            f"cost unknown: model {args.model!r} is not in price table "
            f"{DEFAULT_PRICE_TABLE.version}",
            hint="known: " + ", ".join(sorted(DEFAULT_PRICE_TABLE.models)),
        )
    minutes = _minutes(args.minutes)
    assumptions = _assumptions(args)
    configs = [_rollover(text) for text in args.rollover or ["default"]]
    naive = [model_call(m, prices, assumptions) for m in minutes]
    rolled = [
        (_label(config), [model_call(m, prices, assumptions, config) for m in minutes])
        for config in configs
        if config is not None
    ]
    console = Console(width=180)
    console.print(_assumption_table(assumptions, prices, DEFAULT_PRICE_TABLE.version))
    console.print(_result_table(naive, rolled, model_call(1, prices, assumptions).usd))
    console.print(
        "Compare the naive column with the published estimates by shape (growth with length), "
        "not level: at these prices even a minute of nothing but bot audio costs "
        f"{_usd(prices.cost(TokenCounts(audio_out=60 * 20)))}, below the published $0.11."
    )
    return 0
