"""Rate limits and cost, from what the brain reports.

Two sources, both frames, so the observer never holds a service:

- the realtime service's ``RateLimitsUpdated`` call event (one per
  ``rate_limits.updated``), carried by its ``RealtimeCallEventFrame``;
- pipecat's ``MetricsFrame`` with ``LLMUsageMetricsData``, which the realtime
  service emits from each ``response.done`` usage and the chained LLM from its
  completions' usage.

The chained services' HTTP rate-limit headers are fed through
:meth:`UsageObserver.record_http_headers` by whoever holds the response.
A usage with missing fields is priced as far as it goes and flagged; an
unpriced model is an unknown cost, counted and said so, never zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from loguru import logger

# Parsing usage needs the openai package's realtime types, which take most of a
# second to build: imported with this module, not inside a call's first response.
from openai.types.realtime import RealtimeResponseUsage  # noqa: F401
from pipecat.frames.frames import Frame, MetricsFrame
from pipecat.metrics.metrics import LLMTokenUsage, LLMUsageMetricsData
from pipecat.observers.base_observer import FramePushed

from voxpipe.call.events import RateLimitsUpdated
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.observability.cost import CostLedger, ResponseCost, price_response
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.ratelimits import RateLimitTracker, RateLimitWarning
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.timeline import EventKind, Timeline


def usage_from_tokens(tokens: LLMTokenUsage, model: str | None = None) -> dict[str, Any]:
    """pipecat's token usage as a Realtime ``usage`` object, leaving out what it lacks.

    The audio/text split is given when pipecat had it (a realtime response). A
    model that is not a realtime model (a chat LLM in the chained slot) takes
    and gives text only, so its tokens are text. Otherwise, with no split, the
    cost ledger prices the tokens as audio and marks an upper bound.
    """
    usage: dict[str, Any] = {
        "input_tokens": tokens.prompt_tokens,
        "output_tokens": tokens.completion_tokens,
        "total_tokens": tokens.total_tokens,
    }
    cached = tokens.cache_read_input_tokens or 0
    text_only = (
        model is not None
        and "realtime" not in model
        and tokens.input_audio_tokens is None
        and tokens.output_audio_tokens is None
    )
    if text_only:
        usage["input_token_details"] = {
            "audio_tokens": 0,
            "text_tokens": tokens.prompt_tokens,
            "cached_tokens": cached,
            "cached_tokens_details": {"audio_tokens": 0, "text_tokens": cached},
        }
        usage["output_token_details"] = {
            "audio_tokens": 0,
            "text_tokens": tokens.completion_tokens,
        }
        return usage
    if tokens.input_audio_tokens is not None:
        details: dict[str, Any] = {
            "audio_tokens": tokens.input_audio_tokens,
            "text_tokens": tokens.prompt_tokens - tokens.input_audio_tokens,
            "cached_tokens": cached,
        }
        if tokens.cache_read_input_audio_tokens is not None:
            details["cached_tokens_details"] = {
                "audio_tokens": tokens.cache_read_input_audio_tokens,
                "text_tokens": cached - tokens.cache_read_input_audio_tokens,
            }
        usage["input_token_details"] = details
    if tokens.output_audio_tokens is not None:
        usage["output_token_details"] = {
            "audio_tokens": tokens.output_audio_tokens,
            "text_tokens": tokens.completion_tokens - tokens.output_audio_tokens,
        }
    return usage


def rate_limits_payload(event: RateLimitsUpdated) -> dict[str, Any]:
    """The ``rate_limits.updated`` payload behind the realtime service's event."""
    return {"rate_limits": [dataclasses.asdict(limit) for limit in event.limits]}


class UsageObserver(InlineObserver):
    """Feeds the cost ledger and the rate-limit tracker; exports both to metrics and timeline.

    Args:
        now_ms: the call's clock.
        ledger: the per-call cost ledger (its ``model`` prices usage that names none).
        ratelimits: the rate-limit tracker (its ``warn_below`` sets the warning threshold).
        metrics: where cost and rate limits are exported, if anywhere.
        timeline: the call timeline, which gets a ``cost`` event per response.
        on_warning: called with each rate-limit warning (they are logged either way).
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (MetricsFrame, RealtimeCallEventFrame)

    def __init__(
        self,
        now_ms: Callable[[], float],
        *,
        ledger: CostLedger | None = None,
        ratelimits: RateLimitTracker | None = None,
        metrics: VoxpipeMetrics | None = None,
        timeline: Timeline | None = None,
        on_warning: Callable[[RateLimitWarning], None] | None = None,
    ) -> None:
        super().__init__()
        self.ledger = ledger or CostLedger()
        self.ratelimits = ratelimits or RateLimitTracker()
        self.warnings: list[RateLimitWarning] = []
        self._now = now_ms
        self._metrics = metrics
        self._timeline = timeline
        self._on_warning = on_warning

    def observe(self, data: FramePushed, first: bool) -> None:
        frame = data.frame
        if isinstance(frame, MetricsFrame):
            for item in frame.data:
                if isinstance(item, LLMUsageMetricsData):
                    self.record_usage(usage_from_tokens(item.value, item.model), model=item.model)
        elif isinstance(frame, RealtimeCallEventFrame) and isinstance(
            frame.event, RateLimitsUpdated
        ):
            self.record_rate_limits(rate_limits_payload(frame.event))

    def record_usage(
        self,
        usage: Mapping[str, Any] | None,
        *,
        model: str | None = None,
        response_id: str | None = None,
    ) -> ResponseCost:
        """Price one response's usage (a ``response.done`` usage object) and export it."""
        ledger = self.ledger
        response_id = response_id or f"response-{len(ledger.entries) + 1}"
        entry = price_response(
            response_id, usage, model=model or ledger.model, prices=ledger.prices
        )
        ledger.entries.append(entry)
        if self._metrics is not None:
            self._metrics.record_cost(entry)
        if self._timeline is not None:
            self._timeline.add(self._now(), EventKind.COST, **cost_dict(entry))
        return entry

    def record_rate_limits(self, payload: Mapping[str, Any]) -> list[RateLimitWarning]:
        """Consume a ``rate_limits.updated`` payload; returns (and logs) its warnings."""
        now = self._now()
        return self._after(self.ratelimits.on_realtime_event(payload, now), now)

    def record_http_headers(self, headers: Mapping[str, str]) -> list[RateLimitWarning]:
        """Consume an HTTP answer's ``x-ratelimit-*`` headers (chained services)."""
        now = self._now()
        return self._after(self.ratelimits.on_http_headers(headers, now), now)

    def _after(self, warnings: list[RateLimitWarning], now: float) -> list[RateLimitWarning]:
        if self._metrics is not None:
            for reading in self.ratelimits.latest.values():
                if reading.at_ms == now:
                    self._metrics.record_rate_limit(reading)
        for warning in warnings:
            logger.warning(str(warning))
            if self._on_warning is not None:
                self._on_warning(warning)
        self.warnings.extend(warnings)
        return warnings


def cost_dict(entry: ResponseCost) -> dict[str, Any]:
    """JSON-ready form of a priced response: an unknown cost is null with its reason."""
    known = isinstance(entry.usd, Decimal)
    return {
        "response_id": entry.response_id,
        "model": entry.model,
        "usd": str(entry.usd) if known else None,
        "unknown_reason": None if known else str(entry.usd),
        "upper_bound": entry.is_upper_bound,
        "issues": sorted(issue.value for issue in entry.issues),
        "tokens": {k: v for k, v in dataclasses.asdict(entry.counts).items() if v},
    }
