"""Observers that run inside the push they observe, instead of behind pipecat's queues.

pipecat gives every observer a queue and a task of its own, and puts two
events on that queue for each hop of each frame: the push, and the frame
being processed (whether the observer wants it or not). On the audio path that
is hundreds of events a second, each a queue put and a task switch: measured
in ``benchmarks/observers.py``, one observer that does nothing adds about 7%
to the CPU of a VAD pipeline, even when it asks for first pushes only.

An :class:`InlineObserver` is cheap enough not to need that: it names the
frame types it wants and handles each one with a plain synchronous call that
never awaits. An :class:`ObservedPipeline` hands its processors a thin
:class:`InlineTee` around the worker's observer, so each push is first given
to pipecat (which tells first pushes from later ones) and then, for the types
some inline observer wants, to those observers directly, in the pushing
task. Everything else about observation is unchanged, and an inline observer
still works as an ordinary pipecat observer wherever a pipeline is not an
``ObservedPipeline`` (:class:`ObserverGroup` gives a set of them one queue).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import ClassVar

from loguru import logger
from pipecat.frames.frames import Frame, StartFrame
from pipecat.observers.base_observer import (
    BaseObserver,
    FrameProcessed,
    FramePushed,
    ProcessorSetUp,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import BaseTaskManager

from voxpipe.errors import ConfigError


class InlineObserver(BaseObserver):
    """A frame observer that can run inside the push itself.

    Subclasses set ``frame_types`` and implement :meth:`observe`, which must be
    quick and must not block or await: it runs in the task of the processor
    pushing the frame. ``every_push`` asks for every hop of a frame rather than
    its first push only. As a plain pipecat observer it behaves the same.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (Frame,)

    def __init__(self, *, every_push: bool = False) -> None:
        super().__init__(observe_every_push=every_push)

    def observe(self, data: FramePushed, first: bool) -> None:
        """Handle one push of a frame of ``frame_types``; ``first`` marks its first push."""
        raise NotImplementedError

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, self.frame_types):
            self.observe(data, data.first_push)


_Handlers = tuple[tuple[InlineObserver, bool], ...]


class InlineDispatch:
    """Routes a push to the inline observers that want its frame type.

    The observers are looked up once per concrete frame type, so a push costs a
    dictionary lookup plus the calls it earns. An observer that raises is
    logged (once) and skipped for that push: a bug in an instrument must not
    break the call it measures.
    """

    def __init__(self, observers: Sequence[InlineObserver]) -> None:
        self.observers = tuple(observers)
        self._table: dict[type[Frame], _Handlers] = {}
        self.failures: dict[str, int] = {}

    def dispatch(self, data: FramePushed, first: bool) -> None:
        kind = type(data.frame)
        handlers = self._table.get(kind)
        if handlers is None:
            handlers = self._handlers_for(kind)
        for observer, every in handlers:
            if first or every:
                try:
                    observer.observe(data, first)
                except Exception as exc:
                    self._failed(observer, exc)

    def _handlers_for(self, kind: type[Frame]) -> _Handlers:
        handlers = tuple(
            (o, o.observe_every_push) for o in self.observers if issubclass(kind, o.frame_types)
        )
        self._table[kind] = handlers
        return handlers

    def _failed(self, observer: InlineObserver, exc: Exception) -> None:
        name = type(observer).__name__
        count = self.failures.get(name, 0) + 1
        self.failures[name] = count
        if count == 1:
            logger.opt(exception=exc).error(f"{name} failed on a frame (later failures counted)")


class InlineTee(BaseObserver):
    """The observer an :class:`ObservedPipeline`'s processors report to.

    Each event goes to pipecat's worker observer first (it marks
    ``first_push``), then each push to the inline observers. A frame that
    entered the pipeline from outside (queued into the worker) was first pushed
    by the worker, where no tee sees it, so its first push *inside* the
    pipeline counts as its first. If the worker does not mark first pushes (it
    has no observers of its own), the tee tells them apart itself.
    """

    def __init__(
        self,
        inner: BaseObserver | None,
        dispatch: InlineDispatch,
        entry: FrameProcessor | None = None,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._dispatch = dispatch
        self._entry = entry
        self._checked = inner is None
        self._seen: weakref.WeakValueDictionary[int, Frame] | None = (
            weakref.WeakValueDictionary() if inner is None else None
        )

    async def on_push_frame(self, data: FramePushed) -> None:
        if self._inner is not None:
            await self._inner.on_push_frame(data)
        if not self._checked and isinstance(data.frame, StartFrame):
            self._check_marking(data)
        if self._seen is None:
            first = data.first_push or (
                data.source is self._entry and data.direction is FrameDirection.DOWNSTREAM
            )
        else:
            first = data.frame.id not in self._seen
            if first:
                self._seen[data.frame.id] = data.frame
        self._dispatch.dispatch(data, first)

    def _check_marking(self, data: FramePushed) -> None:
        # The StartFrame reaches us only after the worker pushed it: a marking
        # worker observer says "not first" here. If it says "first", it marks nothing.
        self._checked = True
        if data.first_push:
            self._seen = weakref.WeakValueDictionary()

    async def on_process_frame(self, data: FrameProcessed) -> None:
        if self._inner is not None:
            await self._inner.on_process_frame(data)

    async def on_processor_setup(self, data: ProcessorSetUp) -> None:
        if self._inner is not None:
            await self._inner.on_processor_setup(data)


class ObservedPipeline(Pipeline):
    """A pipecat ``Pipeline`` whose processors also report to inline observers.

    Attach observers with :meth:`observe_inline` before the pipeline is set up
    (:class:`~voxpipe.pipelines.session.CallSession` does it for the inline
    observers it is given). With none attached it is a plain ``Pipeline``.
    """

    def __init__(self, processors: Sequence[FrameProcessor], **kwargs: FrameProcessor) -> None:
        super().__init__(processors, **kwargs)
        self._inline: list[InlineObserver] = []
        self._is_set_up = False
        self.dispatch: InlineDispatch | None = None

    def observe_inline(self, observers: Sequence[InlineObserver]) -> None:
        """Run ``observers`` inside this pipeline's pushes (call before it starts)."""
        if self._is_set_up:
            raise ConfigError(
                "inline observers attached after the pipeline was set up",
                hint="attach them before the worker runs, or pass them to CallSession",
            )
        self._inline.extend(observers)

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]  # as pipecat
        self._is_set_up = True
        if self._inline:
            self.dispatch = InlineDispatch(self._inline)
            tee = InlineTee(setup.observer, self.dispatch, entry=self.entry_processors[0])
            setup = dataclasses.replace(setup, observer=tee)
        await super().setup(setup)


class ObserverGroup(BaseObserver):
    """Several inline observers behind one ordinary pipecat observer.

    For a pipeline that is not an :class:`ObservedPipeline`: pipecat then
    queues each event once for the group instead of once per observer.
    """

    def __init__(self, observers: Sequence[InlineObserver]) -> None:
        super().__init__(observe_every_push=any(o.observe_every_push for o in observers))
        self.members = list(observers)
        self._dispatch = InlineDispatch(self.members)

    async def setup(self, task_manager: BaseTaskManager) -> None:
        await super().setup(task_manager)
        for observer in self.members:
            await observer.setup(task_manager)

    async def cleanup(self) -> None:
        for observer in self.members:
            await observer.cleanup()
        await super().cleanup()

    async def on_push_frame(self, data: FramePushed) -> None:
        self._dispatch.dispatch(data, data.first_push)


def split_observers(
    observers: Sequence[BaseObserver],
) -> tuple[list[InlineObserver], list[BaseObserver]]:
    """The inline observers among ``observers``, and the rest."""
    inline = [o for o in observers if isinstance(o, InlineObserver)]
    return inline, [o for o in observers if not isinstance(o, InlineObserver)]
