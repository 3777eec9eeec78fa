"""Two brains in one slot of the graph, and frames routed to the active one.

:class:`BrainSwitch` holds one branch of processors per :class:`~voxpipe.call.failover.Brain`
and a :class:`BrainSelector` that says which is active. It is pipecat's
``ParallelPipeline`` cut down to what a long call can afford: ``ParallelPipeline``
(and so ``ServiceSwitcher``) remembers the id of every frame it ever passes to
deduplicate its branches' output, which grows for as long as audio flows. Here
only the pipeline's lifecycle frames (start, end, cancel) go to every branch
and are counted back out, once; every other frame goes into the active branch
only, and what an inactive branch pushes out is dropped, except interruptions
(a brain that lets go of the call stops the output on its way out) and the
call events the timeline records.

Two switches can share one selector: the brain slot, and the slot after the
output where each brain's assistant aggregator sits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipecat.frames.frames import CancelFrame, EndFrame, Frame, InterruptionFrame, StartFrame
from pipecat.pipeline.base_pipeline import BasePipeline
from pipecat.pipeline.pipeline import Pipeline, PipelineSink, PipelineSource
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup

from voxpipe.call.failover import Brain
from voxpipe.frames import RealtimeCallEventFrame

_LIFECYCLE = (StartFrame, EndFrame, CancelFrame)
# What leaves a branch that is no longer active: the output must still stop, and the
# timeline must still hear what the brain that let go did.
_ALWAYS_PASSES = (InterruptionFrame, RealtimeCallEventFrame)


class BrainSelector:
    """Which brain is active; shared by the switches of one call."""

    def __init__(self, active: Brain = Brain.REALTIME) -> None:
        self.active = active


class BrainSwitch(BasePipeline):
    """Routes frames into the active brain's branch (see the module docstring)."""

    def __init__(
        self,
        branches: Mapping[Brain, Sequence[FrameProcessor]],
        selector: BrainSelector,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)  # queued, not direct: lifecycle frames pause it
        self.selector = selector
        self.branches: dict[Brain, Pipeline] = {}
        for brain, processors in branches.items():
            source = PipelineSource(self._exit_upstream(brain), name=f"{self}::{brain.value}-in")
            sink = PipelineSink(self._exit_downstream(brain), name=f"{self}::{brain.value}-out")
            self.branches[brain] = Pipeline(list(processors), source=source, sink=sink)
        self._pending: dict[int, int] = {}  # lifecycle frame id -> branches still to pass it
        self._held: list[tuple[Frame, FrameDirection]] = []

    @property
    def processors(self) -> list[FrameProcessor]:
        """The branches (pipecat walks them for setup, metrics and observers)."""
        return list(self.branches.values())

    @property
    def entry_processors(self) -> list[FrameProcessor]:
        """Every branch is an entry: lifecycle frames go into all of them."""
        return list(self.branches.values())

    def processors_with_metrics(self) -> list[FrameProcessor]:
        """The metrics-generating processors of every branch."""
        return [p for branch in self.branches.values() for p in branch.processors_with_metrics()]

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]  # as pipecat
        """Set up the switch, then every branch (each holds the StartFrame until ready)."""
        await super().setup(setup)
        self._setup_finished()
        await self._setup_processors(list(self.branches.values()), setup)

    async def cleanup(self) -> None:
        """Clean up every branch."""
        await super().cleanup()
        await self._cleanup_processors(list(self.branches.values()))

    def branch(self, brain: Brain) -> Pipeline:
        """The branch of ``brain`` (a frame queued into it enters at its start)."""
        return self.branches[brain]

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Lifecycle frames into every branch (counted out once), the rest into the active one."""
        await super().process_frame(frame, direction)
        if isinstance(frame, _LIFECYCLE):
            self._pending[frame.id] = len(self.branches)
            await self.pause_processing_system_frames()
            await self.pause_processing_frames()
            for branch in self.branches.values():
                await branch.queue_frame(frame, direction)
            return
        await self.route(frame, direction)

    async def route(self, frame: Frame, direction: FrameDirection) -> None:
        """Into the active brain's branch (a subclass may hold a frame back first)."""
        await self.branches[self.selector.active].queue_frame(frame, direction)

    def _exit_downstream(self, brain: Brain):  # type: ignore[no-untyped-def]
        async def _push(frame: Frame, direction: FrameDirection) -> None:
            await self._exit(brain, frame, direction)

        return _push

    def _exit_upstream(self, brain: Brain):  # type: ignore[no-untyped-def]
        async def _push(frame: Frame, direction: FrameDirection) -> None:
            await self._exit(brain, frame, direction)

        return _push

    async def _exit(self, brain: Brain, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, _LIFECYCLE) and frame.id in self._pending:
            await self._lifecycle_out(frame, direction)
            return
        if brain is not self.selector.active and not isinstance(frame, _ALWAYS_PASSES):
            return  # a brain that let go of the call speaks no more
        await self.on_branch_output(brain, frame, direction)
        if self._pending:
            self._held.append((frame, direction))  # after the lifecycle frame, as pipecat does
        else:
            await self.push_frame(frame, direction)

    async def _lifecycle_out(self, frame: Frame, direction: FrameDirection) -> None:
        self._pending[frame.id] -= 1
        if self._pending[frame.id] > 0:
            return
        del self._pending[frame.id]
        held, self._held = self._held, []
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
        for f, d in held:
            await self.push_frame(f, d)
        if not isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
        await self.resume_processing_system_frames()
        await self.resume_processing_frames()

    async def on_branch_output(self, brain: Brain, frame: Frame, direction: FrameDirection) -> None:
        """A frame the active branch let out (a subclass watches its brain here)."""
