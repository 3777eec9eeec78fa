"""Observers that run inside the push they observe, instead of behind pipecat's queues.

pipecat gives every observer a queue and a task of its own, and puts two
events on that queue for each hop of each frame: the push, and the frame
being processed (whether the observer wants it or not). On the audio path that
is hundreds of events a second, each a queue put and a task switch: measured
in ``benchmarks/observers.py``, one observer that does nothing and asks for
first pushes only adds about 8% to a call's instructions (voxpipe's instruments
inline: 1.4%).

An :class:`InlineObserver` is cheap enough not to need that: it names the
frame types it wants and, per type, which pushes (a :class:`Route`), and
handles each with a plain synchronous call that never awaits. An
:class:`ObservedPipeline` hands its processors a thin :class:`InlineTee`
around the worker's observer. A push of a type nobody wants goes straight to
pipecat; one picked by where it comes from or goes (caller audio into a VAD)
is handed over at once; one that needs to know whether it is the frame's first
push is handed over after pipecat has marked it. An inline observer still
works as an ordinary pipecat observer wherever a pipeline is not an
``ObservedPipeline`` (:class:`ObserverGroup` gives a set of them one queue).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Container, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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

_NOWHERE: frozenset[FrameProcessor] = frozenset()


@dataclass(frozen=True)
class Route:
    """Which pushes of one frame type an inline observer wants.

    ``first``: the frame's first push, wherever it goes; ``every``: every hop;
    ``sources`` and ``destinations``: the hops made by, or into, these
    processors (containers the observer may keep filling during the call).
    With neither ``first`` nor ``every``, a hop is handed over as it is made,
    before pipecat marks first pushes, and ``observe`` gets ``first=False``.
    """

    first: bool = True
    every: bool = False
    sources: Container[FrameProcessor] = _NOWHERE
    destinations: Container[FrameProcessor] = _NOWHERE

    @property
    def needs_marking(self) -> bool:
        """Whether the observer needs to know a push is the frame's first."""
        return self.first or self.every

    def wants(self, data: FramePushed, first: bool) -> bool:
        return (
            (first and self.first)
            or self.every
            or data.source in self.sources
            or data.destination in self.destinations
        )


FIRST_PUSH = Route()


class InlineObserver(BaseObserver):
    """A frame observer that can run inside the push itself.

    Subclasses set ``frame_types`` and implement :meth:`observe`, which must be
    quick and must not block or await: it runs in the task of the processor
    pushing the frame. By default each frame is observed at its first push;
    :meth:`route` says otherwise per type (``follows_hops`` must then be True,
    so that as a plain pipecat observer it is shown every push).
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (Frame,)
    follows_hops: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(observe_every_push=self.follows_hops)
        self._alone: InlineDispatch | None = None  # routing when run as a plain observer

    def observe(self, data: FramePushed, first: bool) -> None:
        """Handle one push of a frame of ``frame_types``; ``first`` marks its first push."""
        raise NotImplementedError

    def route(self, kind: type[Frame]) -> Route:
        """The pushes of ``kind`` (one of ``frame_types``) wanted; asked once per type."""
        return FIRST_PUSH

    async def on_push_frame(self, data: FramePushed) -> None:
        # As a plain pipecat observer: the same routing as inline, looked up once per type.
        if self._alone is None:
            self._alone = InlineDispatch([self])
        self._alone.dispatch(data, data.first_push)


@dataclass(frozen=True)
class _Entry:
    """The inline observers of one frame type: handed a push before or after marking."""

    before: tuple[tuple[InlineObserver, Route], ...]
    after: tuple[tuple[InlineObserver, Route], ...]


class InlineDispatch:
    """Routes a push to the inline observers that want it.

    Observers and routes are looked up once per concrete frame type, so a push
    costs a dictionary lookup plus the calls it earns. An observer that raises
    is logged (once) and skipped for that push: a bug in an instrument must not
    break the call it measures.
    """

    def __init__(self, observers: Sequence[InlineObserver]) -> None:
        self.observers = tuple(observers)
        self.table: dict[type[Frame], _Entry] = {}
        self.failures: dict[str, int] = {}

    def entry(self, kind: type[Frame]) -> _Entry:
        found = self.table.get(kind)
        if found is None:
            routes = [(o, o.route(kind)) for o in self.observers if issubclass(kind, o.frame_types)]
            found = _Entry(
                before=tuple((o, r) for o, r in routes if not r.needs_marking),
                after=tuple((o, r) for o, r in routes if r.needs_marking),
            )
            self.table[kind] = found
        return found

    def dispatch(self, data: FramePushed, first: bool) -> None:
        """Hand a marked push to every observer that wants it."""
        entry = self.entry(data.frame.__class__)
        self.before(entry, data)
        self.after(entry, data, first)

    def before(self, entry: _Entry, data: FramePushed) -> None:
        for observer, route in entry.before:
            if data.source in route.sources or data.destination in route.destinations:
                self._observe(observer, data, False)

    def after(self, entry: _Entry, data: FramePushed, first: bool) -> None:
        for observer, route in entry.after:
            if route.wants(data, first):
                self._observe(observer, data, first)

    def _observe(self, observer: InlineObserver, data: FramePushed, first: bool) -> None:
        try:
            observer.observe(data, first)
        except Exception as exc:
            name = type(observer).__name__
            count = self.failures.get(name, 0) + 1
            self.failures[name] = count
            if count == 1:
                logger.opt(exception=exc).error(f"{name} failed on a frame (later ones counted)")


class InlineTee(BaseObserver):
    """The observer an :class:`ObservedPipeline`'s processors report to.

    Each push goes to pipecat's worker observer, which marks ``first_push``,
    and to the inline observers that want it (see :class:`Route`). A frame that
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
        self._table = dispatch.table
        self._entry = entry
        self._seen: weakref.WeakValueDictionary[int, Frame] | None = None
        if inner is None:
            self._seen = weakref.WeakValueDictionary()
        else:
            # Processed frames and set-ups are the worker observer's alone: hand
            # its own methods to the processors rather than a call through here.
            self.on_process_frame = inner.on_process_frame  # type: ignore[method-assign]
            self.on_processor_setup = inner.on_processor_setup  # type: ignore[method-assign]
        self._marking_checked = inner is None

    def on_push_frame(self, data: FramePushed) -> Coroutine[Any, Any, None]:  # type: ignore[override]
        # Not a coroutine itself: most pushes need nothing after pipecat's
        # marking, and then its coroutine is handed back as it is.
        entry = self._table.get(data.frame.__class__)
        if entry is None:
            if not self._marking_checked and isinstance(data.frame, StartFrame):
                return self._check_marking(data)
            entry = self._dispatch.entry(data.frame.__class__)
        if entry.before:
            self._dispatch.before(entry, data)
        if entry.after:
            return self._after_marking(entry, data)
        if self._inner is None:
            return _nothing()
        return self._inner.on_push_frame(data)

    async def _after_marking(self, entry: _Entry, data: FramePushed) -> None:
        if self._inner is not None:
            await self._inner.on_push_frame(data)
        if self._seen is None:
            first = data.first_push or (
                data.source is self._entry and data.direction is FrameDirection.DOWNSTREAM
            )
        else:
            first = data.frame.id not in self._seen
            if first:
                self._seen[data.frame.id] = data.frame
        self._dispatch.after(entry, data, first)

    async def _check_marking(self, data: FramePushed) -> None:
        # The StartFrame reaches us only after the worker pushed it: a marking
        # worker observer says "not first" here. If it says "first", it marks nothing.
        if self._inner is not None:
            await self._inner.on_push_frame(data)
        self._marking_checked = True
        if data.first_push:
            self._seen = weakref.WeakValueDictionary()
        self._dispatch.dispatch(data, False)

    async def on_process_frame(self, data: FrameProcessed) -> None:
        pass  # only without a worker observer: there is nobody to tell

    async def on_processor_setup(self, data: ProcessorSetUp) -> None:
        pass


async def _nothing() -> None:
    return None


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
        super().__init__(observe_every_push=any(o.follows_hops for o in observers))
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
