"""All of a call's instruments in one bundle: latency, cost and rate limits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipecat.frames.frames import AudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.utils.asyncio.task_manager import BaseTaskManager

from voxpipe.observability.cost import CostLedger
from voxpipe.observability.latency import LatencyBudget
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.prices import DEFAULT_MODEL
from voxpipe.observability.ratelimits import RateLimitTracker
from voxpipe.processors.observability.events import CallEventMetrics
from voxpipe.processors.observability.latency import (
    BrainKind,
    CaptureStamps,
    LatencyObserver,
    PlaybackReports,
)
from voxpipe.processors.observability.usage import UsageObserver
from voxpipe.timeline import Timeline


class ObserverGroup(BaseObserver):
    """Several observers behind one pipecat observer.

    pipecat queues every push and every processed frame once per observer and
    runs each observer in a task of its own; a group pays that once. Children
    keep their own ``observe_every_push`` choice.
    """

    def __init__(self, observers: Sequence[BaseObserver]) -> None:
        super().__init__(observe_every_push=any(o.observe_every_push for o in observers))
        self.members = list(observers)
        self._every = [o for o in self.members if o.observe_every_push]
        self._processing = [
            o for o in self.members if type(o).on_process_frame is not BaseObserver.on_process_frame
        ]
        # Audio frames are most of the traffic (50 a second through every
        # processor); only members that say they need them see them.
        self._audio = [o for o in self.members if getattr(o, "wants_audio_frames", True)]
        self._audio_every = [o for o in self._audio if o.observe_every_push]
        # A member may screen audio pushes with a plain call (``wants_audio_push``)
        # instead of being awaited for each of them: most pushes of a chunk are
        # between processors it does not watch.
        self._screens = {
            id(o): screen
            for o in self._audio
            if (screen := getattr(o, "wants_audio_push", None)) is not None
        }

    async def setup(self, task_manager: BaseTaskManager) -> None:
        await super().setup(task_manager)
        for observer in self.members:
            await observer.setup(task_manager)

    async def cleanup(self) -> None:
        for observer in self.members:
            await observer.cleanup()
        await super().cleanup()

    async def on_pipeline_started(self) -> None:
        for observer in self.members:
            await observer.on_pipeline_started()

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, AudioRawFrame):
            screens = self._screens
            for observer in self._audio if data.first_push else self._audio_every:
                screen = screens.get(id(observer))
                if screen is None or screen(data):
                    await observer.on_push_frame(data)
            return
        for observer in self.members if data.first_push else self._every:
            await observer.on_push_frame(data)

    async def on_process_frame(self, data: FrameProcessed) -> None:
        for observer in self._processing:
            await observer.on_process_frame(data)


@dataclass
class Instruments:
    """The observers a call runs with, and what they measured."""

    latency: LatencyObserver
    usage: UsageObserver
    timeline: Timeline
    metrics: VoxpipeMetrics | None = None
    call_events: CallEventMetrics | None = None

    @property
    def observers(self) -> list[BaseObserver]:
        """The observers to give the pipeline worker (one group: see :class:`ObserverGroup`)."""
        return self.observers_with()

    def observers_with(self, *others: BaseObserver) -> list[BaseObserver]:
        """The instruments and ``others`` (a timeline observer, ...) as one group."""
        events = [self.call_events] if self.call_events is not None else []
        return [ObserverGroup([*others, self.latency, self.usage, *events])]

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
    return Instruments(latency, usage, timeline, metrics, events)
