"""Supervisor delegation on pipecat's ``LLMWithBackend``, with voxpipe's honest filler.

pipecat 1.14's ``LLMWithBackend`` fits the chained path as it is: the voice
model (the frontend) gets a ``delegate`` tool, a ``BackendLLMWorker`` runs the
stronger model, and each answer comes back into the frontend's conversation
as a ``Backend:`` message that the frontend relays in its own words. What it
lacks is the wait: by default the frontend runs again as soon as it delegates
(``respond_on_delegate``), so the caller hears an acknowledgement on every
delegation, a fast backend's included. :class:`FillerConnector` turns that off
and lets :class:`~voxpipe.delegation.FillerPolicy` decide instead: a filler
(a ``TTSSpeakFrame``) only once the backend has worked past the threshold,
never the same wording twice in a row. It sees a request when the request
strategy composes one (a ``delegate`` call that carries nothing new starts no
wait) and the answer when the connector delivers it.

The timeline gets ``delegation`` events (asked, answered) and a ``filler``
event when one is said, carried as :class:`~voxpipe.frames.RealtimeCallEventFrame`.
A filler that falls due while the caller speaks is held until their turn
ends (:func:`follow_caller` feeds the user aggregator's turn events), and
dropped if the answer comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.llm_with_backend import (
    BackendConnector,
    BackendRequestStrategy,
    ExplicitBackendRequestStrategy,
    LLMWithBackend,
    TranscriptBackendRequestStrategy,
)
from pipecat.services.llm_service import FunctionCallParams, LLMService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.workers.base_worker import BaseWorker
from pipecat.workers.llm.backend_llm_worker import (
    BACKEND_PAIRING_INSTRUCTION,
    BackendError,
    BackendEvent,
    BackendIdle,
    BackendLLMWorker,
    BackendOutput,
)

from voxpipe.delegation import (
    BackendAnswered,
    BackendAsked,
    BackendDropped,
    DelegateBackend,
    DelegationSettings,
    FillerPolicy,
    FillerSpoken,
)
from voxpipe.errors import DelegationConfigError
from voxpipe.frames import RealtimeCallEventFrame

OPENAI_BACKEND_MODEL = "gpt-4.1"
# pipecat's backend pairing instruction (~380 tokens) asks the model to mark what the
# caller should hear with ">>"; Qwen 0.5B forgets the mark and spends ~2 s (unloaded) on
# the prompt. The local backend gets this short one and every answer it writes is spoken.
LOCAL_PAIRING_INSTRUCTION = (
    "You are the backend of a voice assistant. It sends you what the caller asked. "
    "Answer in one or two short sentences that can be spoken as they are: no lists, "
    "no Markdown."
)

DelegationEvent = BackendAsked | FillerSpoken | BackendAnswered | BackendDropped


class FillerConnector(BackendConnector):
    """pipecat's connector, with the wait on the backend filled honestly (module docstring).

    Args:
        settings: threshold and wordings (``[delegate]``).
        now_ms: the clock the policy and the timeline events are read with.
        frontend_is_realtime: the frontend is speech-to-speech (its context lags
            the audio, so the request is worded by the model, not transcribed).
    """

    def __init__(
        self,
        settings: DelegationSettings,
        now_ms: Callable[[], float] = lambda: time.monotonic() * 1000,
        *,
        frontend_is_realtime: bool = False,
    ) -> None:
        inner = (
            ExplicitBackendRequestStrategy()
            if frontend_is_realtime
            else TranscriptBackendRequestStrategy()
        )
        super().__init__(request_strategy=_Watched(inner, self._asked), respond_on_delegate=False)
        self.policy = FillerPolicy(settings)
        self.events: list[DelegationEvent] = []
        self._now_ms = now_ms
        self._timer: asyncio.Task[None] | None = None
        self._frontend: LLMService[Any] | None = None

    async def delegate(self, params: FunctionCallParams) -> None:
        try:
            await super().delegate(params)
        except BaseException:
            # The request never reached the backend: there is no wait to fill.
            self._disarm()
            if (dropped := self.policy.abandoned()) is not None:
                await self._publish(params.llm, dropped)
            raise

    async def deliver(self, frontend: LLMService[Any], event: BackendEvent) -> None:
        if _is_answer(event):
            self._disarm()
            if (answered := self.policy.answered(self._now_ms())) is not None:
                await self._publish(frontend, answered)
        elif isinstance(event, BackendIdle):
            self._disarm()
            # Done with nothing to say: nothing to fill either.
            if (dropped := self.policy.abandoned()) is not None:
                await self._publish(frontend, dropped)
        await super().deliver(frontend, event)

    async def run_session(self, worker: BaseWorker, frontend: LLMService[Any]) -> None:
        try:
            await super().run_session(worker, frontend)
        finally:
            self._disarm()

    async def caller_started(self) -> None:
        """The caller began a turn: no filler over their words (it is held)."""
        self.policy.caller_started()

    async def caller_stopped(self) -> None:
        """The caller's turn ended: say the filler held meanwhile, or time it again."""
        filler = self.policy.caller_stopped(self._now_ms())
        if self._frontend is None:
            return
        if filler is not None:
            await self._say(self._frontend, filler)
        elif self.policy.due_at_ms() is not None:
            self._arm(self._frontend)

    async def _asked(self, params: FunctionCallParams) -> None:
        self._frontend = params.llm
        asked = self.policy.delegated(self._now_ms())
        await self._publish(params.llm, asked)
        if not asked.joined:
            self._arm(params.llm)

    def _arm(self, frontend: LLMService[Any]) -> None:
        self._disarm()
        due = self.policy.due_at_ms()
        if due is not None:
            self._timer = asyncio.get_running_loop().create_task(self._fill_at(frontend, due))

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _fill_at(self, frontend: LLMService[Any], due_ms: float) -> None:
        await asyncio.sleep(max(0.0, due_ms - self._now_ms()) / 1000)
        filler = self.policy.poll(self._now_ms())
        if filler is not None:  # None: answered meanwhile, or held while the caller speaks
            await self._say(frontend, filler)

    async def _say(self, frontend: LLMService[Any], filler: FillerSpoken) -> None:
        await self._publish(frontend, filler)  # before its audio: the timeline marks it
        await frontend.push_frame(TTSSpeakFrame(filler.wording))

    async def _publish(self, frontend: LLMService[Any], event: DelegationEvent) -> None:
        self.events.append(event)
        await frontend.push_frame(RealtimeCallEventFrame(event=event, at_ms=self._now_ms()))


class _Watched(BackendRequestStrategy):
    """A request strategy that reports each request it composes (the wait starts there)."""

    def __init__(
        self,
        inner: BackendRequestStrategy,
        asked: Callable[[FunctionCallParams], Awaitable[None]],
    ) -> None:
        self._inner = inner
        self._asked = asked
        self.tool_parameters = inner.tool_parameters
        self.tool_required = inner.tool_required
        self.frontend_instruction = inner.frontend_instruction
        self.tool_description = inner.tool_description
        self.requires_context = inner.requires_context

    async def compose_request(self, params: FunctionCallParams) -> str | None:
        request = await self._inner.compose_request(params)
        if request is not None:
            await self._asked(params)
        return request


def _is_answer(event: BackendEvent) -> bool:
    if isinstance(event, BackendError):
        return True  # the caller is told the work stopped: the wait is over
    return (
        isinstance(event, BackendOutput)
        and event.prefers_spoken
        and not event.is_thought
        and bool(event.text)
    )


class FollowsCaller(Protocol):
    """A delegation driver that holds its filler while the caller speaks."""

    async def caller_started(self) -> None: ...

    async def caller_stopped(self) -> None: ...


def follow_caller(user_aggregator: Any, driver: FollowsCaller) -> None:
    """Tell ``driver`` when the caller's turns begin and end (the user aggregator's events)."""

    @user_aggregator.event_handler("on_user_turn_started")
    async def _started(*_args: Any) -> None:
        await driver.caller_started()

    @user_aggregator.event_handler("on_user_turn_stopped")
    async def _stopped(*_args: Any) -> None:
        await driver.caller_stopped()


def delegating_llm(
    frontend: LLMService[Any],
    settings: DelegationSettings,
    *,
    backend: LLMService[Any] | None = None,
    openai_api_key: str | None = None,
    now_ms: Callable[[], float] = lambda: time.monotonic() * 1000,
) -> LLMWithBackend:
    """``frontend`` with a ``delegate`` tool to ``settings.backend``: the chained brain.

    ``backend`` overrides the service :func:`backend_llm` would build.
    """
    service = backend or backend_llm(settings, openai_api_key)
    local = settings.backend is DelegateBackend.LOCAL
    worker = BackendLLMWorker(
        llm=service,
        transform_output=_spoken if local else None,
        pairing_instruction=LOCAL_PAIRING_INSTRUCTION if local else BACKEND_PAIRING_INSTRUCTION,
    )
    realtime = frontend.service_metadata_frame().is_realtime_service
    connector = FillerConnector(settings, now_ms, frontend_is_realtime=realtime)
    return LLMWithBackend(frontend=frontend, backend=worker, connector=connector)


def backend_llm(
    settings: DelegationSettings, openai_api_key: str | None = None, base_url: str | None = None
) -> LLMService[Any]:
    """The backend's LLM service: the local LLM, or OpenAI's chat model (needs a key)."""
    if settings.backend is DelegateBackend.LOCAL:
        from voxpipe.processors.local.llm import LocalLLMService

        return LocalLLMService(instructions=settings.instructions, speculate=False)
    if not openai_api_key:
        raise DelegationConfigError(
            "<delegate>",
            "delegate.backend",
            "'openai' needs an OpenAI API key",
            hint="set OPENAI_API_KEY, or use backend = 'local' offline",
        )
    return OpenAILLMService(
        api_key=openai_api_key,
        base_url=base_url,
        settings=OpenAILLMService.Settings(
            model=OPENAI_BACKEND_MODEL, system_instruction=settings.instructions
        ),
    )


async def _spoken(output: BackendOutput) -> BackendOutput | None:
    """Every answer the local backend writes is for the caller (it has no tools to note)."""
    if not output.is_thought:
        output.prefers_spoken = True
    return output


__all__ = ["FillerConnector", "FollowsCaller", "backend_llm", "delegating_llm", "follow_caller"]
