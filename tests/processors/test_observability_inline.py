"""Inline observers: they run inside the pushes of an ObservedPipeline.

A real pipecat worker runs a small pipeline of pass-through processors; the
tests check what an inline observer is told (first pushes once per frame,
every hop when asked, frames that entered from outside), that a broken
observer costs the call nothing, and that on a plain pipecat ``Pipeline`` the
same observers still work behind one ordinary observer.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from pipecat.frames.frames import EndFrame, Frame, TextFrame, TranscriptionFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from voxpipe.errors import ConfigError
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import InlineObserver, ObservedPipeline, ObserverGroup
from voxpipe.processors.observability.inline import Route


class Passing(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Speaker(Passing):
    """Pushes a frame of its own (made inside the pipeline) for every text it passes."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and not isinstance(frame, TranscriptionFrame):
            await self.push_frame(TranscriptionFrame(frame.text, "caller", "now"))


class Seen(InlineObserver):
    frame_types: ClassVar[tuple[type[Frame], ...]] = (TextFrame,)

    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[tuple[str, bool, str]] = []
        self.in_task: list[bool] = []

    def observe(self, data: FramePushed, first: bool) -> None:
        self.pushes.append((type(data.frame).__name__, first, data.source.name))
        self.in_task.append(asyncio.current_task() is not None)

    def firsts(self) -> list[str]:
        return [name for name, first, _ in self.pushes if first]


class SeenEveryHop(Seen):
    follows_hops: ClassVar[bool] = True

    def route(self, kind: type[Frame]) -> Route:
        return Route(every=True)


class Routed(InlineObserver):
    """Wants texts as they leave one processor and as they go into another."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (TextFrame,)
    follows_hops: ClassVar[bool] = True

    def __init__(self, out_of: FrameProcessor, into: FrameProcessor) -> None:
        super().__init__()
        self._route = Route(first=False, sources={out_of}, destinations={into})
        self.pushes: list[tuple[str, str, bool]] = []

    def route(self, kind: type[Frame]) -> Route:
        return self._route

    def observe(self, data: FramePushed, first: bool) -> None:
        self.pushes.append((data.source.name, data.destination.name, first))


class Broken(InlineObserver):
    frame_types: ClassVar[tuple[type[Frame], ...]] = (TextFrame,)

    def observe(self, data: FramePushed, first: bool) -> None:
        raise RuntimeError("instrument bug")


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            self.texts.append(frame.text)
        await self.push_frame(frame, direction)


def stages() -> tuple[list[FrameProcessor], Sink]:
    sink = Sink()
    return [Passing(), Speaker(), Passing(), sink], sink


async def run_call(pipeline: Pipeline, observers: list[InlineObserver], texts: list[str]) -> None:
    async with CallSession(pipeline, observers=observers, end_timeout_secs=5) as call:
        for text in texts:
            await call.queue(TextFrame(text))


async def test_first_pushes_are_told_once_per_frame_and_every_hop_when_asked() -> None:
    processors, sink = stages()
    first, every = Seen(), SeenEveryHop()
    await run_call(ObservedPipeline(processors), [first, every], ["one", "two"])

    assert sink.texts == ["one", "one", "two", "two"]  # each text, then its transcript
    # The queued texts entered from outside the pipeline: their first push
    # inside it counts as first. The transcripts were made inside it.
    assert sorted(first.firsts()) == sorted(["TextFrame"] * 2 + ["TranscriptionFrame"] * 2)
    assert all(first for _, first, _ in first.pushes)
    texts = [p for p in every.pushes if p[0] == "TextFrame"]
    # Every hop: out of the pipeline's own source, out of each processor, and
    # out of the pipeline itself on the way to the worker.
    assert len(texts) == 2 * (len(processors) + 2)
    assert sum(1 for _, f, _ in texts if f) == 2
    # They ran inside the push, in the pushing processor's task.
    assert all(every.in_task)


async def test_a_route_picks_hops_by_where_they_come_from_and_go() -> None:
    for make in (ObservedPipeline, Pipeline):
        processors, sink = stages()
        speaker = processors[1]
        routed = Routed(out_of=speaker, into=sink)
        await run_call(make(processors), [routed], ["one"])

        # The text and its transcript leave the speaker, and both go into the sink;
        # no other hop is handed over, and none is said to be a first push.
        out_of = [p for p in routed.pushes if p[0] == speaker.name]
        into = [p for p in routed.pushes if p[1] == sink.name]
        assert len(out_of) == 2 and len(into) == 2, (make, routed.pushes)
        assert len(routed.pushes) == 4
        assert not any(first for *_, first in routed.pushes)


async def test_a_failing_inline_observer_is_logged_and_the_call_loses_nothing() -> None:
    processors, sink = stages()
    pipeline = ObservedPipeline(processors)
    seen = Seen()
    await run_call(pipeline, [Broken(), seen], ["one", "two", "three"])

    assert sink.texts.count("three") == 2  # every frame went through
    assert len(seen.firsts()) == 6  # the other observer saw them all
    assert pipeline.dispatch is not None and pipeline.dispatch.failures == {"Broken": 6}


async def test_on_a_plain_pipeline_the_same_observers_share_one_pipecat_observer() -> None:
    inline_processors, _ = stages()
    plain_processors, sink = stages()
    inline, plain = SeenEveryHop(), SeenEveryHop()
    await run_call(ObservedPipeline(inline_processors), [inline], ["a", "b"])
    await run_call(Pipeline(plain_processors), [plain], ["a", "b"])

    assert sink.texts == ["a", "a", "b", "b"]
    # pipecat counts the worker's own push from outside as the first: the plain
    # route sees that hop too, and marks it first instead of the pipeline's own.
    names = sorted(name for name, *_ in plain.pushes)
    assert names.count("TranscriptionFrame") == sorted(n for n, *_ in inline.pushes).count(
        "TranscriptionFrame"
    )
    assert len(plain.firsts()) == len(inline.firsts()) == 4


async def test_without_a_marking_worker_observer_the_tee_tells_first_pushes_itself() -> None:
    processors, sink = stages()
    pipeline = ObservedPipeline(processors)
    seen = Seen()
    pipeline.observe_inline([seen])
    # No observers and no turn tracking: pipecat's worker observer marks nothing.
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(),
        enable_turn_tracking=False,
        cancel_on_idle_timeout=False,
        idle_timeout_secs=None,
    )
    await worker.queue_frames([TextFrame("x"), TextFrame("y"), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), 10)

    assert sink.texts == ["x", "x", "y", "y"]
    assert sorted(seen.firsts()) == sorted(["TextFrame"] * 2 + ["TranscriptionFrame"] * 2)


async def test_attaching_after_set_up_is_refused() -> None:
    processors, _ = stages()
    pipeline = ObservedPipeline(processors)
    async with CallSession(pipeline, observers=[Seen()], end_timeout_secs=5):
        with pytest.raises(ConfigError, match="after the pipeline was set up"):
            pipeline.observe_inline([Seen()])


def test_a_group_needs_every_push_if_any_member_does() -> None:
    assert ObserverGroup([Seen(), SeenEveryHop()]).observe_every_push
    assert not ObserverGroup([Seen(), Seen()]).observe_every_push
