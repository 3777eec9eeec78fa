"""voxpipe.observability: where the time went and what it cost.

Sans-I/O cores: the price table and cost ledger, the call cost model, the
per-turn latency budget and the rate-limit tracker. The Prometheus side is in
:mod:`voxpipe.observability.metrics` and :mod:`voxpipe.transports.metrics_http`.
"""

from voxpipe.observability.cost import (
    CostLedger,
    LedgerTotal,
    ResponseCost,
    UsageIssue,
    parse_usage,
    price_response,
)
from voxpipe.observability.cost_model import (
    CallAssumptions,
    CallEstimate,
    model_call,
)
from voxpipe.observability.latency import (
    Boundary,
    LatencyBudget,
    Segment,
    Spread,
    TurnLatencyTracker,
    TurnStamps,
    budget,
    summarize,
)
from voxpipe.observability.prices import (
    DEFAULT_MODEL,
    DEFAULT_PRICE_TABLE,
    ModelPrices,
    PriceTable,
    TokenCounts,
    TokenKind,
    UnknownCost,
)
from voxpipe.observability.ratelimits import (
    RateLimitName,
    RateLimitReading,
    RateLimitSource,
    RateLimitTracker,
    RateLimitWarning,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRICE_TABLE",
    "Boundary",
    "CallAssumptions",
    "CallEstimate",
    "CostLedger",
    "LatencyBudget",
    "LedgerTotal",
    "ModelPrices",
    "PriceTable",
    "RateLimitName",
    "RateLimitReading",
    "RateLimitSource",
    "RateLimitTracker",
    "RateLimitWarning",
    "ResponseCost",
    "Segment",
    "Spread",
    "TokenCounts",
    "TokenKind",
    "TurnLatencyTracker",
    "TurnStamps",
    "UnknownCost",
    "UsageIssue",
    "budget",
    "model_call",
    "parse_usage",
    "price_response",
    "summarize",
]
