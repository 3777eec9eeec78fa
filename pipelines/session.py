"""Run a graph as one call: a pipecat worker with a start, an end and a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from pipecat.frames.frames import EndFrame, Frame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.base_pipeline import BasePipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection
from pipecat.workers.runner import WorkerRunner

from voxpipe.processors.observability.inline import (
    ObservedPipeline,
    ObserverGroup,
    split_observers,
)


class CallSession:
    """One running call. Use as ``async with CallSession(pipeline) as call: ...``.

    On exit the call is ended gracefully (queued audio is played out) within
    ``end_timeout_secs``, and cancelled after that. Inline observers (voxpipe's
    instruments) run inside the pushes of an :class:`ObservedPipeline` (every
    graph voxpipe builds is one); on another pipeline they share one ordinary
    pipecat observer. Other observers go to the worker as they are.
    """

    def __init__(
        self,
        pipeline: BasePipeline,
        *,
        observers: Sequence[BaseObserver] = (),
        in_sample_rate: int = 16_000,
        out_sample_rate: int = 24_000,
        start_timeout_secs: float = 60.0,
        end_timeout_secs: float = 30.0,
        enable_metrics: bool = True,
    ) -> None:
        inline, others = split_observers(observers)
        if inline and isinstance(pipeline, ObservedPipeline):
            pipeline.observe_inline(inline)
        elif inline:
            others.append(ObserverGroup(inline))
        self.worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=in_sample_rate,
                audio_out_sample_rate=out_sample_rate,
                enable_metrics=enable_metrics,
                enable_usage_metrics=enable_metrics,
            ),
            observers=others,
            cancel_on_idle_timeout=False,
            idle_timeout_secs=None,
        )
        self._runner = WorkerRunner(handle_sigint=False)
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._start_timeout = start_timeout_secs
        self._end_timeout = end_timeout_secs

        @self.worker.event_handler("on_pipeline_started")
        async def _started(_worker: Any, _frame: Frame) -> None:
            self._started.set()

    async def __aenter__(self) -> CallSession:
        await self._runner.add_workers(self.worker)
        self._task = asyncio.create_task(self._runner.run())
        started = asyncio.create_task(self._started.wait())
        done, _ = await asyncio.wait(
            {started, self._task}, timeout=self._start_timeout, return_when="FIRST_COMPLETED"
        )
        if started not in done:
            started.cancel()
            await self.cancel()
            if self._task.done() and self._task.exception():
                raise self._task.exception()  # type: ignore[misc]
            raise TimeoutError(f"pipeline did not start within {self._start_timeout} s")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            await self.cancel()
        else:
            await self.end()

    @property
    def finished(self) -> bool:
        """Whether the pipeline has stopped (ended, cancelled, or failed)."""
        return self._task is not None and self._task.done()

    async def queue(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        await self.worker.queue_frame(frame, direction)

    async def end(self) -> None:
        """End after what is queued has played; cancel if that takes too long."""
        if self._task is None or self._task.done():
            return
        await self.worker.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._end_timeout)
        except TimeoutError:
            await self.cancel()

    async def cancel(self) -> None:
        if self._task is None or self._task.done():
            return
        await self.worker.cancel()
        try:
            await asyncio.wait_for(self._task, 10)
        except TimeoutError:
            self._task.cancel()

    async def wait(self) -> None:
        """Wait for the pipeline to finish on its own (wrap in ``asyncio.timeout``)."""
        if self._task is not None:
            await asyncio.shield(self._task)
