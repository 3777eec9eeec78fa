"""Prometheus metrics for calls: latency, interruptions, recovery, rate limits, guardrails, cost.

One :class:`VoxpipeMetrics` owns one :class:`~prometheus_client.CollectorRegistry`
(so tests and several apps in one process never collide) and labels every
series with ``environment`` and ``project``, so production and development
traffic are told apart on one Prometheus. Times are exported in seconds, the
Prometheus convention; the alert rules in ``voxpipe/data/alerts.yml`` use them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from decimal import Decimal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    generate_latest,
)

from voxpipe.observability.cost import ResponseCost
from voxpipe.observability.latency import LatencyBudget
from voxpipe.observability.prices import TokenKind
from voxpipe.observability.ratelimits import RateLimitReading
from voxpipe.slot_fallback import HandedOff, SlotEvent

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST
FIRST_AUDIO_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
SEGMENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BASE = ("environment", "project")


class VoxpipeMetrics:
    """Every metric voxpipe exports, bound to ``environment`` and ``project``."""

    def __init__(self, environment: str = "development", project: str = "voxpipe") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._base = {"environment": environment, "project": project}
        self._defined: dict[str, frozenset[str]] = {}
        self._define_latency()
        self._define_call_events()
        self._define_usage()

    def _define_latency(self) -> None:
        h = self._histogram
        self.first_audio = h(
            "voxpipe_first_audio_seconds",
            "Speech end to first audio written.",
            (),
            FIRST_AUDIO_BUCKETS,
        )
        self.end_to_end = h(
            "voxpipe_end_to_end_seconds",
            "Speech end to playback reported.",
            (),
            FIRST_AUDIO_BUCKETS,
        )
        self.segment = h(
            "voxpipe_latency_segment_seconds",
            "Turn latency by segment.",
            ("segment",),
            SEGMENT_BUCKETS,
        )
        self.clock_skew = self._counter(
            "voxpipe_clock_skew", "Segments measured negative (clock skew).", ("segment",)
        )

    def _define_call_events(self) -> None:
        c = self._counter
        self.interruptions = c("voxpipe_interruptions", "Interruptions (barge-in, guardrail).", ())
        self.recovery_failures = c(
            "voxpipe_interruption_recovery_failures", "Interruptions not recovered cleanly.", ()
        )
        self.rollovers = c("voxpipe_rollovers", "Session rollovers.", ())
        self.ice_restarts = c(
            "voxpipe_ice_restarts",
            "Callers' transports rejoined mid-call (a network switch), not new calls.",
            (),
        )
        self.reconnects = c("voxpipe_reconnects", "Reconnects by class.", ("failure_class",))
        self.brain_switches = c(
            "voxpipe_brain_switches",
            "Calls moved between the realtime and chained brains, by direction and reason.",
            ("from_brain", "to_brain", "reason"),
        )
        self.token_rotations = c("voxpipe_token_rotations", "Ephemeral token rotations.", ())
        self.token_rotation_failures = c(
            "voxpipe_token_rotation_failures", "Failed token rotations.", ()
        )
        self.guardrail_trips = c("voxpipe_guardrail_trips", "Guardrail trips.", ("policy",))
        self.errors = c("voxpipe_errors", "Errors by type.", ("error_type",))
        self.slot_handoffs = c(
            "voxpipe_slot_handoffs",
            "Chained slot requests handed on to the next engine.",
            ("slot", "from_engine", "to_engine", "reason"),
        )
        self.slot_failures = c(
            "voxpipe_slot_failures",
            "Chained slot requests no engine served (partial: an answer broke midway).",
            ("slot", "partial"),
        )

    def _define_usage(self) -> None:
        g, c = self._gauge, self._counter
        limit_labels = ("name", "source")
        self.rate_limit_remaining = g(
            "voxpipe_rate_limit_remaining", "Rate limit remaining.", limit_labels
        )
        self.rate_limit_ratio = g(
            "voxpipe_rate_limit_remaining_ratio", "Rate limit remaining / limit.", limit_labels
        )
        self.cost = c("voxpipe_cost_usd", "Priced cost of responses in USD.", ("model",))
        self.unpriced = c("voxpipe_unpriced_responses", "Responses with unknown cost.", ("model",))
        self.tokens = c("voxpipe_tokens", "Tokens by billing class.", ("model", "kind"))

    def observe_turn(self, budget: LatencyBudget) -> None:
        """Record a turn's measured segments; negative ones count as clock skew, not latency."""
        if budget.first_audio_ms is not None and budget.first_audio_ms >= 0:
            self.first_audio.labels(**self._base).observe(budget.first_audio_ms / 1000)
        if budget.end_to_end_ms is not None and budget.end_to_end_ms >= 0:
            self.end_to_end.labels(**self._base).observe(budget.end_to_end_ms / 1000)
        for segment, ms in budget.measured.items():
            if segment in budget.skewed:
                self.clock_skew.labels(segment=segment.value, **self._base).inc()
            else:
                self.segment.labels(segment=segment.value, **self._base).observe(ms / 1000)

    def record_interruption(self, *, recovered: bool = True) -> None:
        """An interruption happened; ``recovered=False`` when cancel/truncate did not settle."""
        self.interruptions.labels(**self._base).inc()
        if not recovered:
            self.recovery_failures.labels(**self._base).inc()

    def record_rollover(self) -> None:
        """The session was rolled over."""
        self.rollovers.labels(**self._base).inc()

    def record_ice_restart(self) -> None:
        """A caller's transport was replaced mid-call (network switch, laptop waking up)."""
        self.ice_restarts.labels(**self._base).inc()

    def record_brain_switch(
        self, previous: enum.Enum, current: enum.Enum, reason: enum.Enum
    ) -> None:
        """A call moved to the other brain (the failover policy's reason)."""
        self.brain_switches.labels(
            from_brain=str(previous.value),
            to_brain=str(current.value),
            reason=str(reason.value),
            **self._base,
        ).inc()

    def record_reconnect(self, failure_class: enum.Enum) -> None:
        """A reconnect, labelled with the recovery classifier's class."""
        self.reconnects.labels(failure_class=str(failure_class.value), **self._base).inc()

    def record_token_rotation(self, *, ok: bool) -> None:
        """An ephemeral token rotation attempt and whether it succeeded."""
        target = self.token_rotations if ok else self.token_rotation_failures
        target.labels(**self._base).inc()

    def record_guardrail_trip(self, policy: str) -> None:
        """A guardrail policy stopped a response."""
        self.guardrail_trips.labels(policy=policy, **self._base).inc()

    def record_error(self, error_type: str) -> None:
        """An error, by type (a server ``error.type`` or a voxpipe error class name)."""
        self.errors.labels(error_type=error_type, **self._base).inc()

    def record_slot_event(self, event: SlotEvent) -> None:
        """A chained slot handed a request on, or gave it up."""
        if isinstance(event, HandedOff):
            self.slot_handoffs.labels(
                slot=event.slot.value,
                from_engine=event.from_engine,
                to_engine=event.to_engine,
                reason=event.reason.value,
                **self._base,
            ).inc()
        else:
            partial = "true" if event.partial else "false"
            self.slot_failures.labels(slot=event.slot.value, partial=partial, **self._base).inc()

    def record_rate_limit(self, reading: RateLimitReading) -> None:
        """Export a rate-limit reading."""
        labels = {"name": reading.name.value, "source": reading.source.value, **self._base}
        self.rate_limit_remaining.labels(**labels).set(reading.remaining)
        self.rate_limit_ratio.labels(**labels).set(reading.fraction)

    def record_cost(self, cost: ResponseCost) -> None:
        """Add a priced response; an unknown cost is counted, never added as zero."""
        for kind in TokenKind:
            if count := cost.counts.of(kind):
                self.tokens.labels(model=cost.model, kind=kind.value, **self._base).inc(count)
        if isinstance(cost.usd, Decimal):
            self.cost.labels(model=cost.model, **self._base).inc(float(cost.usd))
        else:
            self.unpriced.labels(model=cost.model, **self._base).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def definitions(self) -> dict[str, frozenset[str]]:
        """Every sample name this class can export, with its label names."""
        return dict(self._defined)

    def _define(self, samples: Sequence[str], labels: Sequence[str]) -> None:
        for sample in samples:
            self._defined[sample] = frozenset((*_BASE, *labels))

    def _histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        self._define([f"{name}_bucket", f"{name}_count", f"{name}_sum"], [*labels, "le"])
        return Histogram(name, doc, (*_BASE, *labels), registry=self.registry, buckets=buckets)

    def _counter(self, name: str, doc: str, labels: Sequence[str]) -> Counter:
        self._define([f"{name}_total"], labels)
        return Counter(name, doc, (*_BASE, *labels), registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str]) -> Gauge:
        self._define([name], labels)
        return Gauge(name, doc, (*_BASE, *labels), registry=self.registry)
