"""The chained slots with fallback: STT, LLM and TTS services that hand a request on.

Each service holds its slot's engines (:mod:`voxpipe.processors.slot_members`)
and the slot's sans-I/O core (:class:`voxpipe.slot_fallback.SlotFallback`),
which decides; the service only waits, with the core's deadline, and reports.
Every handoff and give-up is pushed as a :class:`~voxpipe.frames.SlotFallbackFrame`
(the call's timeline and metrics record it).

- :class:`FallbackSTTService`: a segment's transcript, whole, within the deadline.
- :class:`FallbackLLMService`: the first text (or tool call) within the
  deadline, and each next chunk within it too; once text has streamed the
  answer is not handed on unless ``retry_after_partial``.
- :class:`FallbackTTSService`: a sentence's first audio within the deadline;
  a voice that misses it is replaced for that sentence, and the next sentence
  tries the first voice again (one slow sentence under load should not cost
  the call its voice) unless the voice failed ``trip_after`` sentences in a
  row, which benches it for ``cooldown_ms`` (a dead voice then costs two
  deadlines, not one per sentence).

A missed deadline leaves a local engine's thread to finish its current item
in the background (a model cannot be interrupted mid-token), so the next
engine starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from loguru import logger
from openai.types.chat import ChatCompletionChunk
from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.utils.errors import ErrorCategory

from voxpipe.errors import SlotFailedError
from voxpipe.frames import SlotFallbackFrame
from voxpipe.processors.local.stt import LocalWhisperSTTService
from voxpipe.processors.local.tts import LocalTTSService
from voxpipe.processors.slot_members import ChatSource, Member, Transcriber, Voice
from voxpipe.slot_fallback import (
    GaveUp,
    HandedOff,
    HandoffReason,
    SlotEvent,
    SlotFallback,
    SlotRequest,
)
from voxpipe.weights import LLM_MODEL

M = TypeVar("M", bound=Member)
T = TypeVar("T")
Clock = Callable[[], float]  # milliseconds, monotonic


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class DeadlineMissed(Exception):
    """The engine produced nothing within its deadline."""


class SlotDriver(Generic[M]):
    """Carries out one slot's fallback: which member, how long to wait, what to report."""

    def __init__(
        self,
        fallback: SlotFallback,
        members: Sequence[M],
        announce: Callable[[SlotEvent], Awaitable[None]],
        clock: Clock = monotonic_ms,
    ) -> None:
        self.fallback = fallback
        self.members = {m.name: m for m in members}
        self._announce = announce
        self.clock = clock
        self._abandoned: set[int] = set()  # streams left to finish in the background
        self._closing: set[asyncio.Task[None]] = set()

    def begin(self) -> SlotRequest:
        return self.fallback.begin(self.clock())

    def member(self, request: SlotRequest) -> M:
        return self.members[request.engine]

    async def preload(self) -> None:
        """Load every member now; one that cannot load fails (and hands on) its first request."""
        for member in self.members.values():
            try:
                await member.load()
            except Exception as exc:
                logger.warning(f"{self.fallback.slot.value} engine {member.name} not loaded: {exc}")

    async def within(
        self, request: SlotRequest, work: Awaitable[T], stream: AsyncIterator[Any] | None = None
    ) -> T:
        """``await work`` until the request's deadline; past it raise :class:`DeadlineMissed`.

        A missed (or cancelled) wait leaves ``work`` to end in the background and
        closes ``stream`` once it has.
        """
        budget_ms = request.remaining_ms(self.clock())
        task = asyncio.ensure_future(work)
        try:
            timeout = None if budget_ms is None else budget_ms / 1000
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(task, stream)
            raise
        if task in done:
            return task.result()
        self._abandon(task, stream)
        raise DeadlineMissed(f"nothing within {self.fallback.deadline_ms(request.engine)} ms")

    async def failed(self, request: SlotRequest, error: BaseException) -> GaveUp | None:
        """Report the current member's failure; the give-up, if no member is left."""
        reason = (
            HandoffReason.DEADLINE if isinstance(error, DeadlineMissed) else HandoffReason.ERROR
        )
        detail, engine = str(error) or type(error).__name__, request.engine
        event = request.failed(self.clock(), reason, detail)
        after = f"handed to {event.to_engine}" if isinstance(event, HandedOff) else "given up"
        logger.warning(
            f"{self.fallback.slot.value} engine {engine} ({reason.value}: {detail}): {after}"
        )
        await self._announce(event)
        return event if isinstance(event, GaveUp) else None

    async def close(self, stream: AsyncIterator[Any]) -> None:
        """Close a member's stream, unless a missed deadline left it to close itself."""
        if id(stream) in self._abandoned:
            return
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    def _abandon(self, task: asyncio.Future[Any], stream: AsyncIterator[Any] | None) -> None:
        task.cancel()
        if stream is None:
            return
        self._abandoned.add(id(stream))

        async def _close_when_done() -> None:
            await asyncio.wait({task})
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            self._abandoned.discard(id(stream))

        closer = asyncio.get_running_loop().create_task(_close_when_done())
        self._closing.add(closer)
        closer.add_done_callback(self._closing.discard)


class FallbackSTTService(LocalWhisperSTTService):
    """Transcribes each segment with the first STT engine that manages it in time."""

    def __init__(
        self,
        members: Sequence[Transcriber],
        fallback: SlotFallback,
        *,
        clock: Clock = monotonic_ms,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.slot = SlotDriver(fallback, members, self._announce, clock)

    async def _announce(self, event: SlotEvent) -> None:
        await self.push_frame(SlotFallbackFrame(event=event))

    async def preload(self) -> None:
        await self.slot.preload()

    async def transcribe_segment(self, audio: bytes) -> str:
        request = self.slot.begin()
        while True:
            member = self.slot.member(request)
            try:
                text = await self.slot.within(request, member.transcribe(audio, self.sample_rate))
            except Exception as exc:
                gave_up = await self.slot.failed(request, exc)
                if gave_up is not None:
                    raise gave_up.error() from exc
                continue
            request.succeeded()
            return text


class FallbackLLMService(OpenAILLMService):
    """Answers with the first LLM engine that starts in time; pipecat's OpenAI logic around it."""

    def __init__(
        self,
        members: Sequence[ChatSource],
        fallback: SlotFallback,
        *,
        instructions: str | None = None,
        clock: Clock = monotonic_ms,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "settings",
            OpenAILLMService.Settings(model=LLM_MODEL, system_instruction=instructions),
        )
        # The base class's own client is never used: the members answer.
        super().__init__(api_key="fallback", **kwargs)
        self.slot = SlotDriver(fallback, members, self._announce, clock)

    async def _announce(self, event: SlotEvent) -> None:
        await self.push_frame(SlotFallbackFrame(event=event))

    async def preload(self) -> None:
        await self.slot.preload()

    def _classify_error(self, exception: BaseException) -> ErrorCategory | None:
        if isinstance(exception, SlotFailedError):
            return ErrorCategory.SERVER  # this request failed; the next one tries again
        return None

    async def get_chat_completions(self, context: LLMContext) -> Any:  # type: ignore[override]
        return self._answer(context)

    async def _answer(self, context: LLMContext) -> AsyncGenerator[ChatCompletionChunk, None]:
        request = self.slot.begin()
        while True:
            stream = self.slot.member(request).chunks(context)
            try:
                while True:
                    try:
                        chunk = await self.slot.within(request, anext(stream), stream)
                    except StopAsyncIteration:
                        request.succeeded()
                        return
                    if _carries_output(chunk):
                        request.produced_output(self.slot.clock())
                    yield chunk
            except Exception as exc:
                gave_up = await self.slot.failed(request, exc)
                if gave_up is not None:
                    raise gave_up.error() from exc
            finally:
                await self.slot.close(stream)


def _carries_output(chunk: ChatCompletionChunk) -> bool:
    return any(c.delta and (c.delta.content or c.delta.tool_calls) for c in chunk.choices or [])


class FallbackTTSService(LocalTTSService):
    """Speaks each sentence with the first voice that starts it in time."""

    def __init__(
        self,
        members: Sequence[Voice],
        fallback: SlotFallback,
        *,
        clock: Clock = monotonic_ms,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.slot = SlotDriver(fallback, members, self._announce, clock)

    async def _announce(self, event: SlotEvent) -> None:
        await self.push_frame(SlotFallbackFrame(event=event))

    async def preload(self) -> None:
        await self.slot.preload()

    async def presynthesize(self, text: str) -> None:
        """Nothing: which voice speaks a sentence is decided when it is asked for."""

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        request = self.slot.begin()
        await self.start_tts_usage_metrics(text)
        try:
            while not request.finished:
                async for frame in self._attempt(request, text, context_id):
                    yield frame
        finally:
            await self.stop_ttfb_metrics()

    async def _attempt(
        self, request: SlotRequest, text: str, context_id: str
    ) -> AsyncGenerator[Frame, None]:
        """One voice's try at the sentence; the request says whether another follows."""
        voice = self.slot.member(request)
        stream = voice.synthesize(text)
        try:
            first = await self.slot.within(request, anext(stream), stream)
            request.produced_output(self.slot.clock())
            async for frame in self._stream_audio_frames_from_iterator(
                _prepend(first, stream), in_sample_rate=voice.sample_rate, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
            request.succeeded()
        except StopAsyncIteration:
            request.succeeded()  # the voice has nothing to say for this text
        except Exception as exc:
            gave_up = await self.slot.failed(request, exc)
            if gave_up is not None:
                yield ErrorFrame(f"TTS failed: {gave_up.error()}")
        finally:
            await self.slot.close(stream)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
