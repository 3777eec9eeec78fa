"""All of a call's instruments in one bundle: latency, cost and rate limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipecat.processors.frame_processor import FrameProcessor

from voxpipe.observability.cost import CostLedger
from voxpipe.observability.latency import LatencyBudget
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.prices import DEFAULT_MODEL
from voxpipe.observability.ratelimits import RateLimitTracker
from voxpipe.processors.observability.events import CallEventMetrics
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.observability.latency import LatencyObserver
from voxpipe.processors.observability.slots import SlotFallbackMetrics
from voxpipe.processors.observability.sources import BrainKind, CaptureStamps, PlaybackReports
from voxpipe.processors.observability.usage import UsageObserver
from voxpipe.timeline import Timeline


@dataclass
class Instruments:
    """The observers a call runs with, and what they measured."""

    latency: LatencyObserver
    usage: UsageObserver
    timeline: Timeline
    metrics: VoxpipeMetrics | None = None
    call_events: CallEventMetrics | None = None
    slot_events: SlotFallbackMetrics | None = None

    @property
    def observers(self) -> list[InlineObserver]:
        """The observers to give :class:`~voxpipe.pipelines.session.CallSession`.

        They are inline observers: inside the pushes of an ``ObservedPipeline``
        (every voxpipe graph), else behind one pipecat observer.
        """
        events = [e for e in (self.call_events, self.slot_events) if e is not None]
        return [self.latency, self.usage, *events]

    @property
    def budgets(self) -> list[LatencyBudget]:
        """Every finished turn's latency budget."""
        return self.latency.turns

    @property
    def ledger(self) -> CostLedger:
        """The call's cost ledger."""
        return self.usage.ledger

    @property
    def ratelimits(self) -> RateLimitTracker:
        """The call's rate-limit tracker."""
        return self.usage.ratelimits

    def finish(self) -> None:
        """Close the last turn once the call has ended (idempotent)."""
        self.latency.finish()


def instrument(
    now_ms: Callable[[], float],
    *,
    brain: FrameProcessor,
    output: FrameProcessor,
    timeline: Timeline,
    input: FrameProcessor | None = None,
    kind: BrainKind | None = None,
    capture: CaptureStamps | None = None,
    playback: PlaybackReports | None = None,
    metrics: VoxpipeMetrics | None = None,
    model: str = DEFAULT_MODEL,
    warn_below: float = 0.1,
) -> Instruments:
    """Build a call's instruments on one clock.

    Args:
        now_ms: the transport's clock.
        brain: the realtime service or the chained LLM.
        kind: speech or text brain (guessed from the brain's type by default).
        output: the output transport processor.
        input: the input transport processor (cheaper to follow caller audio from).
        timeline: the call timeline the instruments write into.
        capture, playback: the transport's capture stamps and playback reports
            (the file transport gives both).
        metrics: the process's Prometheus metrics, if exported (turn latency, cost,
            rate limits, and the realtime service's call events).
        model: the model that usage naming none is priced as.
        warn_below: warn when a rate limit's remaining share falls below this.
    """
    latency = LatencyObserver(
        now_ms,
        brain=brain,
        output=output,
        input=input,
        kind=kind,
        capture=capture,
        playback=playback,
        metrics=metrics,
        timeline=timeline,
    )
    usage = UsageObserver(
        now_ms,
        ledger=CostLedger(model=model),
        ratelimits=RateLimitTracker(warn_below),
        metrics=metrics,
        timeline=timeline,
    )
    events = CallEventMetrics(metrics) if metrics is not None else None
    slots = SlotFallbackMetrics(metrics) if metrics is not None else None
    return Instruments(latency, usage, timeline, metrics, events, slots)
