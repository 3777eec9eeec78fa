"""Run a graph as one call: a pipecat worker with a start, an end and a timeout.

A call whose caller is a recording (the file transport) also has a natural
end: the recording has played out and the bot has answered and fallen quiet
(:meth:`CallSession.run_until_input_ends`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.base_pipeline import BasePipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection
from pipecat.workers.runner import WorkerRunner

from voxpipe.delegation import BackendAnswered, BackendAsked, BackendDropped
from voxpipe.errors import ConfigError
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.processors.observability.inline import (
    InlineObserver,
    ObservedPipeline,
    ObserverGroup,
    split_observers,
)


@runtime_checkable
class FiniteInput(Protocol):
    """A transport whose caller audio runs out, as a recording's does (``FileTransport``).

    It notes when (``input_finished_ms``) and fires ``on_input_finished`` then.
    """

    input_finished_ms: float | None

    def add_event_handler(self, event_name: str, handler: Any) -> None: ...

    def remove_event_handler(self, event_name: str, handler: Any) -> None: ...


class BotActivity(InlineObserver):
    """What the bot is doing, as far as the natural end of a recorded call goes.

    It is speaking (between the output's started and stopped frames), generating
    a reply (between the brain's response start and end, pushed by pipecat's
    OpenAI-shaped LLMs even on failure), or owes the caller an answer (their turn
    ended and the bot has not spoken since). An interruption ends a generation.
    A turn delegated to a backend model (:mod:`voxpipe.delegation`) is a reply
    being generated until the backend answers (a filler's audio in between
    does not settle it) or drops it; its answer is then owed. A caller's turn
    that has started and not yet ended (local Whisper holds the end until its
    transcript is in, seconds under load) owes an answer too.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        LLMFullResponseStartFrame,
        LLMFullResponseEndFrame,
        InterruptionFrame,
        RealtimeCallEventFrame,
    )

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()
        self.speaking = False
        self.generating = False
        self.answer_due = False
        self.delegated = False  # a backend is working on the caller's turn
        self.caller_turn_open = False

    def observe(self, data: FramePushed, first: bool) -> None:
        self.note(data.frame)

    def note(self, frame: Frame) -> None:
        """Take in one frame of ``frame_types``."""
        if isinstance(frame, BotStartedSpeakingFrame | BotStoppedSpeakingFrame):
            self.speaking = isinstance(frame, BotStartedSpeakingFrame)
            self.answer_due = False
        elif isinstance(frame, UserStartedSpeakingFrame):
            self.caller_turn_open = True
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self.answer_due, self.caller_turn_open = True, False
        elif isinstance(frame, LLMFullResponseStartFrame | LLMFullResponseEndFrame):
            self.generating = isinstance(frame, LLMFullResponseStartFrame)
        elif isinstance(frame, InterruptionFrame):
            self.generating = False
        elif isinstance(frame, RealtimeCallEventFrame):
            self._note_delegation(frame.event)
        self.changed.set()

    def _note_delegation(self, event: object) -> None:
        if isinstance(event, BackendAsked):
            self.delegated = True
        elif isinstance(event, BackendAnswered):
            self.delegated, self.answer_due = False, True  # the voice model relays it
        elif isinstance(event, BackendDropped):
            self.delegated = False

    def next_wait(self, quiet_secs: float, answer_secs: float) -> float | None:
        """How long to wait for the next change before deciding (None: as long as it takes).

        A reply being generated is waited for: on a loaded 2-core machine the
        local LLM's first token once took 35 s, past any sensible answer timeout.
        """
        if self.generating or self.delegated:
            return None
        return answer_secs if self.answer_due or self.caller_turn_open else quiet_secs

    async def until_quiet(self, quiet_secs: float, answer_secs: float) -> None:
        """Return once the bot has been idle for ``quiet_secs``, or has owed an
        answer for ``answer_secs`` without starting one."""
        while True:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), self.next_wait(quiet_secs, answer_secs))
            except TimeoutError:
                if not self.speaking:
                    return


@runtime_checkable
class Preloads(Protocol):
    """A processor that can load its model before the pipeline starts (the local engines)."""

    async def preload(self) -> None: ...


class CallSession:
    """One running call. Use as ``async with CallSession(graph) as call: ...``.

    ``graph`` is a :class:`VoiceGraph` (what the graph builders return) or any
    pipecat pipeline; given the graph, the session also knows its transport,
    which :meth:`run_until_input_ends` needs.

    On exit the call is ended gracefully (queued audio is played out) within
    ``end_timeout_secs``, and cancelled after that. Inline observers (voxpipe's
    instruments) run inside the pushes of an :class:`ObservedPipeline` (every
    graph voxpipe builds is one); on another pipeline they share one ordinary
    pipecat observer. Other observers go to the worker as they are.
    """

    def __init__(
        self,
        graph: VoiceGraph | BasePipeline,
        *,
        observers: Sequence[BaseObserver] = (),
        in_sample_rate: int = 16_000,
        out_sample_rate: int = 24_000,
        start_timeout_secs: float = 60.0,
        end_timeout_secs: float = 30.0,
        enable_metrics: bool = True,
    ) -> None:
        self.graph = graph if isinstance(graph, VoiceGraph) else None
        pipeline = graph.pipeline if isinstance(graph, VoiceGraph) else graph
        # Only a graph's transport can say its input ended; only then is the bot watched.
        self._activity = BotActivity() if self.graph is not None else None
        if self._activity is not None:
            observers = [*observers, self._activity]
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
            # voxpipe's own instruments measure the call; pipecat's RTVI messages
            # (for its client SDKs) and turn tracking would only cost CPU on
            # every frame, and RTVI logs each data-channel message it does not know.
            enable_rtvi=False,
            enable_turn_tracking=False,
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
        # Local models load first: on a cold, loaded machine that alone can take longer
        # than the start timeout, which is there to catch a pipeline that hangs.
        for service in self.graph.services.values() if self.graph is not None else ():
            if isinstance(service, Preloads):
                await service.preload()
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

    async def run_until_input_ends(
        self,
        *,
        quiet_secs: float = 2.5,
        answer_timeout_secs: float = 30.0,
        max_secs: float | None = None,
    ) -> None:
        """Wait until a recorded caller is done: the recording has played to its end,
        the bot owes no answer and has been quiet for ``quiet_secs``.

        Call it inside ``async with``; leaving the block then ends the call. A
        reply being generated is waited for however long it takes; an answer
        that never starts is given up on after ``answer_timeout_secs``. The
        whole wait raises ``TimeoutError`` after ``max_secs`` (None: no limit).
        Returns early if the pipeline stops by itself.

        Raises:
            ConfigError: the session runs a bare pipeline (pass the
                :class:`VoiceGraph`), or its transport's input never ends (a
                live caller), or the session has not started.
        """
        transport, activity = self._finite_input()
        if self._task is None:
            raise ConfigError("run_until_input_ends() runs inside 'async with CallSession(...)'")
        waiting = asyncio.create_task(
            _input_then_quiet(transport, activity, quiet_secs, answer_timeout_secs)
        )
        try:
            async with asyncio.timeout(max_secs):
                await asyncio.wait({waiting, self._task}, return_when="FIRST_COMPLETED")
        finally:
            if not waiting.done():
                waiting.cancel()
                await asyncio.wait({waiting})

    def _finite_input(self) -> tuple[FiniteInput, BotActivity]:
        if self.graph is None or self._activity is None:
            raise ConfigError(
                "run_until_input_ends() needs the graph's transport",
                hint="pass the VoiceGraph to CallSession, not graph.pipeline",
            )
        transport = self.graph.transport
        if not isinstance(transport, FiniteInput):
            raise ConfigError(
                f"{type(transport).__name__}'s input never ends, so a call on it has no "
                "natural end",
                hint="end it yourself: leave the 'async with' block or call end()",
            )
        return transport, self._activity

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


async def _input_then_quiet(
    transport: FiniteInput, activity: BotActivity, quiet_secs: float, answer_secs: float
) -> None:
    finished = asyncio.Event()

    async def _on_finished(_transport: Any) -> None:
        finished.set()

    transport.add_event_handler("on_input_finished", _on_finished)
    try:
        if transport.input_finished_ms is None:
            await finished.wait()
    finally:
        transport.remove_event_handler("on_input_finished", _on_finished)
    await activity.until_quiet(quiet_secs, answer_secs)
