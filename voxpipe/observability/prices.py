"""A versioned price table for speech-to-speech models.

Prices are US dollars per one million tokens, held as :class:`~decimal.Decimal`
so that a call's running total never drifts by float rounding. A model the table
does not know has an *unknown* price: :func:`PriceTable.lookup` returns ``None``
and cost code reports :class:`UnknownCost`, never zero, because a zero would
read as "free" on a dashboard.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from voxpipe.weights import LLM_MODEL

MILLION = Decimal(1_000_000)

# A dated snapshot ("gpt-realtime-2025-08-28") is priced like its alias.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class TokenKind(enum.Enum):
    """The billing classes a Realtime response's tokens fall into."""

    AUDIO_IN = "audio_in"
    CACHED_AUDIO_IN = "cached_audio_in"
    AUDIO_OUT = "audio_out"
    TEXT_IN = "text_in"
    CACHED_TEXT_IN = "cached_text_in"
    TEXT_OUT = "text_out"


@dataclass(frozen=True)
class TokenCounts:
    """Tokens of one response (or of a modelled call) by billing class.

    ``audio_in`` and ``text_in`` count *uncached* input only; cached input is
    counted separately so that every token has exactly one price.
    """

    audio_in: int = 0
    cached_audio_in: int = 0
    audio_out: int = 0
    text_in: int = 0
    cached_text_in: int = 0
    text_out: int = 0

    def of(self, kind: TokenKind) -> int:
        """The count for one billing class."""
        count: int = getattr(self, kind.value)
        return count

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(**{k.value: self.of(k) + other.of(k) for k in TokenKind})

    @property
    def total(self) -> int:
        """All tokens, input and output, cached or not."""
        return sum(self.of(kind) for kind in TokenKind)


@dataclass(frozen=True)
class UnknownCost:
    """A cost that cannot be computed; ``reason`` says why, for logs and reports."""

    reason: str

    def __str__(self) -> str:
        return f"unknown ({self.reason})"


@dataclass(frozen=True)
class ModelPrices:
    """One model's prices in USD per one million tokens."""

    model: str
    audio_in: Decimal
    cached_audio_in: Decimal
    audio_out: Decimal
    text_in: Decimal
    cached_text_in: Decimal
    text_out: Decimal

    def per_million(self, kind: TokenKind) -> Decimal:
        """The price of one million tokens of ``kind``."""
        price: Decimal = getattr(self, kind.value)
        return price

    def cost(self, counts: TokenCounts) -> Decimal:
        """Exact cost in USD of ``counts`` at these prices."""
        total = sum((self.per_million(kind) * counts.of(kind) for kind in TokenKind), Decimal(0))
        return total / MILLION


@dataclass(frozen=True)
class PriceTable:
    """Prices for several models, stamped with a version and the date they apply from."""

    version: str
    effective: str
    models: Mapping[str, ModelPrices] = field(default_factory=dict)

    def lookup(self, model: str) -> ModelPrices | None:
        """Prices for ``model`` or its dated snapshot; ``None`` if the table does not know it."""
        if model in self.models:
            return self.models[model]
        alias = _SNAPSHOT_SUFFIX.sub("", model)
        return self.models.get(alias)

    def cost(self, model: str, counts: TokenCounts) -> Decimal | UnknownCost:
        """Cost of ``counts`` on ``model``, or :class:`UnknownCost` for a model not in the table."""
        prices = self.lookup(model)
        if prices is None:
            return UnknownCost(f"model {model!r} is not in price table {self.version}")
        return prices.cost(counts)


def _prices(model: str, *usd: str) -> ModelPrices:
    # Argument order follows TokenKind: audio in, cached audio in, audio out, text ...
    return ModelPrices(model, *map(Decimal, usd))


# Published list prices (per 1M tokens) for the GA realtime models.
DEFAULT_PRICE_TABLE = PriceTable(
    version="2025-08-28",
    effective="2025-08-28",
    models={
        "gpt-realtime": _prices("gpt-realtime", "32", "0.40", "64", "4", "0.40", "16"),
        "gpt-realtime-mini": _prices(
            "gpt-realtime-mini", "10", "0.30", "20", "0.60", "0.06", "2.40"
        ),
        # voxpipe's embedded chained LLM runs on your own hardware: no per-token fee.
        LLM_MODEL: _prices(LLM_MODEL, "0", "0", "0", "0", "0", "0"),
    },
)
DEFAULT_MODEL = "gpt-realtime"
