"""Per-response cost from a Realtime ``usage`` object, and a per-call ledger.

``response.done`` carries ``usage``; fields may be missing (older servers,
cancelled responses, proxies that strip details). Every gap is recorded as a
:class:`UsageIssue` on the result instead of being silently read as zero. When
the split between audio and text is missing, the unattributed tokens are priced
as audio, the dearer modality, and the cost is marked as an upper bound.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from voxpipe.observability.prices import (
    DEFAULT_MODEL,
    DEFAULT_PRICE_TABLE,
    PriceTable,
    TokenCounts,
    TokenKind,
    UnknownCost,
)

if TYPE_CHECKING:
    from openai.types.realtime import RealtimeResponseUsage


class UsageIssue(enum.Enum):
    """What was missing or wrong in a ``usage`` object."""

    NO_USAGE = "no_usage"
    MALFORMED = "malformed"  # not a usage object at all (wrong types)
    NEGATIVE_COUNT = "negative_count"
    INPUT_DETAILS_MISSING = "input_details_missing"
    OUTPUT_DETAILS_MISSING = "output_details_missing"
    CACHED_DETAILS_MISSING = "cached_details_missing"
    TOTALS_DISAGREE = "totals_disagree"


# Issues after which the priced counts are a guess, priced high on purpose.
_UPPER_BOUND_ISSUES = frozenset(
    {
        UsageIssue.INPUT_DETAILS_MISSING,
        UsageIssue.OUTPUT_DETAILS_MISSING,
        UsageIssue.CACHED_DETAILS_MISSING,
        UsageIssue.TOTALS_DISAGREE,
        UsageIssue.NEGATIVE_COUNT,
    }
)
# Issues after which nothing can be priced.
_UNPRICEABLE_ISSUES = frozenset({UsageIssue.NO_USAGE, UsageIssue.MALFORMED})


@dataclass(frozen=True)
class ParsedUsage:
    """Token counts read from ``usage`` and the issues met on the way."""

    counts: TokenCounts
    issues: frozenset[UsageIssue]

    @property
    def is_upper_bound(self) -> bool:
        """True when a missing split was filled in with the dearer modality."""
        return bool(self.issues & _UPPER_BOUND_ISSUES)


@dataclass(frozen=True)
class ResponseCost:
    """The cost of one response; ``usd`` is :class:`UnknownCost` when it cannot be priced."""

    response_id: str
    model: str
    counts: TokenCounts
    usd: Decimal | UnknownCost
    issues: frozenset[UsageIssue]

    @property
    def is_upper_bound(self) -> bool:
        """True when the cost is an estimate from the top (a split was missing)."""
        return bool(self.issues & _UPPER_BOUND_ISSUES)


def _split(total: int | None, audio: int | None, text: int | None) -> tuple[int, int, bool]:
    """Audio and text parts of ``total``; the flag says the split had to be guessed."""
    if audio is None and text is None:
        return total or 0, 0, total is not None and total > 0
    known_audio, known_text = audio or 0, text or 0
    rest = 0 if total is None else total - known_audio - known_text
    guessed = audio is None or text is None or rest != 0
    # Unattributed tokens go to audio: an upper bound beats an undercount.
    return known_audio + max(rest, 0), known_text, guessed


def _input_counts(usage: RealtimeResponseUsage, issues: set[UsageIssue]) -> TokenCounts:
    details = usage.input_token_details
    if details is None:
        if usage.input_tokens:
            issues.add(UsageIssue.INPUT_DETAILS_MISSING)
        return TokenCounts(audio_in=usage.input_tokens or 0)
    audio, text, guessed = _split(usage.input_tokens, details.audio_tokens, details.text_tokens)
    if guessed:
        issues.add(UsageIssue.TOTALS_DISAGREE)
    cached = details.cached_tokens or 0
    cached_details = details.cached_tokens_details
    if cached_details is None:
        if cached:
            issues.add(UsageIssue.CACHED_DETAILS_MISSING)
        # Cached tokens without a split: credit the cheap text first, so the
        # guess errs towards the higher cost.
        cached_text = min(cached, text)
        cached_audio = min(cached - cached_text, audio)
    else:
        cached_audio = min(cached_details.audio_tokens or 0, audio)
        cached_text = min(cached_details.text_tokens or 0, text)
    return TokenCounts(
        audio_in=audio - cached_audio,
        cached_audio_in=cached_audio,
        text_in=text - cached_text,
        cached_text_in=cached_text,
    )


def _output_counts(usage: RealtimeResponseUsage, issues: set[UsageIssue]) -> TokenCounts:
    details = usage.output_token_details
    if details is None:
        if usage.output_tokens:
            issues.add(UsageIssue.OUTPUT_DETAILS_MISSING)
        return TokenCounts(audio_out=usage.output_tokens or 0)
    audio, text, guessed = _split(usage.output_tokens, details.audio_tokens, details.text_tokens)
    if guessed:
        issues.add(UsageIssue.TOTALS_DISAGREE)
    return TokenCounts(audio_out=audio, text_out=text)


def parse_usage(usage: RealtimeResponseUsage | Mapping[str, Any] | None) -> ParsedUsage:
    """Read token counts from a ``response.done`` usage object (typed or raw JSON)."""
    if usage is None:
        return ParsedUsage(TokenCounts(), frozenset({UsageIssue.NO_USAGE}))
    # Imported here: the openai package takes a second to load, and the cost
    # model behind ``voxpipe cost`` never parses usage.
    from openai.types.realtime import RealtimeResponseUsage
    from pydantic import ValidationError

    if not isinstance(usage, RealtimeResponseUsage):
        try:
            usage = RealtimeResponseUsage.model_validate(dict(usage))
        except (ValidationError, TypeError, ValueError):
            return ParsedUsage(TokenCounts(), frozenset({UsageIssue.MALFORMED}))
    issues: set[UsageIssue] = set()
    counts = _input_counts(usage, issues) + _output_counts(usage, issues)
    if any(counts.of(kind) < 0 for kind in TokenKind):
        issues.add(UsageIssue.NEGATIVE_COUNT)
        counts = TokenCounts(**{k.value: max(counts.of(k), 0) for k in TokenKind})
    return ParsedUsage(counts, frozenset(issues))


def price_response(
    response_id: str,
    usage: RealtimeResponseUsage | Mapping[str, Any] | None,
    *,
    model: str = DEFAULT_MODEL,
    prices: PriceTable = DEFAULT_PRICE_TABLE,
) -> ResponseCost:
    """Cost of one response; unknown (not zero) for a missing usage or an unpriced model."""
    parsed = parse_usage(usage)
    usd: Decimal | UnknownCost
    if parsed.issues & _UNPRICEABLE_ISSUES:
        usd = UnknownCost("response.done carried no usable usage")
    else:
        usd = prices.cost(model, parsed.counts)
    return ResponseCost(response_id, model, parsed.counts, usd, parsed.issues)


@dataclass(frozen=True)
class LedgerTotal:
    """A call's running total: known dollars plus how many responses could not be priced."""

    known_usd: Decimal
    unknown_responses: int
    upper_bound_responses: int

    @property
    def is_complete(self) -> bool:
        """True when every response was priced (so ``known_usd`` is the whole cost)."""
        return self.unknown_responses == 0


@dataclass
class CostLedger:
    """Per-call cost ledger: one entry per ``response.done``, and a running total."""

    model: str = DEFAULT_MODEL
    prices: PriceTable = DEFAULT_PRICE_TABLE
    entries: list[ResponseCost] = field(default_factory=list)

    def record(
        self, response_id: str, usage: RealtimeResponseUsage | Mapping[str, Any] | None
    ) -> ResponseCost:
        """Price one response and add it to the ledger."""
        entry = price_response(response_id, usage, model=self.model, prices=self.prices)
        self.entries.append(entry)
        return entry

    @property
    def total(self) -> LedgerTotal:
        """Running total over every recorded response."""
        known = sum((e.usd for e in self.entries if isinstance(e.usd, Decimal)), Decimal(0))
        unknown = sum(1 for e in self.entries if isinstance(e.usd, UnknownCost))
        upper = sum(1 for e in self.entries if e.is_upper_bound)
        return LedgerTotal(known, unknown, upper)

    @property
    def tokens(self) -> TokenCounts:
        """All tokens the call used, by billing class."""
        total = TokenCounts()
        for entry in self.entries:
            total = total + entry.counts
        return total
