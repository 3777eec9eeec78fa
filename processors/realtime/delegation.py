"""Supervisor delegation on the realtime path: the speech-to-speech model's ``delegate`` tool.

On the chained path pipecat's ``LLMWithBackend`` carries delegation
(:mod:`voxpipe.processors.delegation`): a text voice model, a filler spoken
by the TTS. A realtime graph has no TTS, and its model speaks for itself, so
the same controls are driven here through the realtime call instead:

- the model gets a ``delegate`` tool (the caller's request, in its words);
- its handler sends the request to the backend (the local LLM, or OpenAI's
  chat model) and :class:`~voxpipe.delegation.FillerPolicy` times the wait;
- past the threshold the model itself says the filler (held while the
  caller speaks, said when they stop if the wait goes on): a response with
  response-level instructions (``ResponseReason.FILLER``), which the call
  sends only while the tool call is pending and no response plays, and
  never queues (so it is never said after the answer);
- the backend's answer is the tool's result: ``function_call_output``, then
  ``response.create``, and the model says it.

The timeline gets the same ``delegation``/``filler`` lines as the chained
path (carried as :class:`~voxpipe.frames.RealtimeCallEventFrame`), so a
turn's latency runs to the answer's audio with the filler's marked apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.adapters.llm.schemas.direct_function import tool_options
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams, LLMService

from voxpipe.call import ResponseReason
from voxpipe.delegation import (
    BackendAnswered,
    BackendAsked,
    BackendDropped,
    DelegationSettings,
    FillerPolicy,
    FillerSpoken,
)
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.processors.delegation import LOCAL_PAIRING_INSTRUCTION, backend_llm

if TYPE_CHECKING:
    from voxpipe.processors.realtime import RealtimeService

DELEGATE_TOOL = "delegate"
FILLER_INSTRUCTION = "Say exactly this, and nothing else: {line}"
# Appended to the session's instructions (after them: an agent's own words come first).
FRONTEND_INSTRUCTION = (
    "When the caller asks something you cannot answer from this conversation, call the "
    "delegate tool with their request in one sentence and say nothing else; its result "
    "is the answer: say it to the caller in your own words."
)
BACKEND_FAILED = "The backend could not answer; tell the caller you could not find out."

DelegationEvent = BackendAsked | FillerSpoken | BackendAnswered | BackendDropped


class RealtimeDelegation:
    """The ``delegate`` tool of a realtime call, with an honest filler (module docstring).

    Args:
        settings: ``[delegate]``: backend, threshold, wordings, the backend's instructions.
        backend: the backend's LLM service (default: :func:`realtime_backend`).
        openai_api_key: for the ``openai`` backend.
        now_ms: the clock of the policy and the timeline lines (the call's, once attached).
    """

    def __init__(
        self,
        settings: DelegationSettings,
        backend: LLMService[Any] | None = None,
        *,
        openai_api_key: str | None = None,
        now_ms: Callable[[], float] = lambda: time.monotonic() * 1000,
    ) -> None:
        self.settings = settings
        self.policy = FillerPolicy(settings)
        self.events: list[DelegationEvent] = []
        self.backend = backend or realtime_backend(settings, openai_api_key)
        self._now_ms = now_ms
        self._service: RealtimeService | None = None
        self._timer: asyncio.Task[None] | None = None

        async def delegate(params: FunctionCallParams) -> None:
            await self.delegate(params)

        self.tool = FunctionSchema(
            name=DELEGATE_TOOL,
            description="Hand the caller's request to the expert backend; returns its answer.",
            properties={
                "request": {
                    "type": "string",
                    "description": "What the caller wants to know, in one sentence.",
                }
            },
            required=["request"],
            # The backend's work outlives a barge-in: its answer is still wanted.
            handler=tool_options(delegate, cancel_on_interruption=False),
        )

    def attach(self, service: RealtimeService) -> None:
        """The call whose model delegates: it says the fillers and carries the events."""
        self._service = service
        self._now_ms = service.now_ms

    async def delegate(self, params: FunctionCallParams) -> None:
        """The tool's handler: ask the backend, fill a long wait, return the answer."""
        request = str(params.arguments.get("request") or "").strip()
        if not request:
            await params.result_callback({"error": "say what the caller asked, as 'request'"})
            return
        asked = self.policy.delegated(self._now_ms())
        await self._publish(asked)
        if not asked.joined:  # a request during a wait joins it, and its timer
            self._arm()
        try:
            answer = await ask_backend(self.backend, request)
        except Exception as exc:  # the caller is told; the call goes on
            logger.warning(f"delegate: the backend failed: {exc}")
            self._disarm()
            await self._publish(self.policy.abandoned())
            await params.result_callback({"error": BACKEND_FAILED})
            return
        except BaseException:
            self._disarm()
            raise
        self._disarm()
        await self._publish(self.policy.answered(self._now_ms()))
        await params.result_callback({"answer": answer})

    async def caller_started(self) -> None:
        """The caller began a turn: no filler over their words (it is held)."""
        self.policy.caller_started()

    async def caller_stopped(self) -> None:
        """The caller's turn ended: say the filler held meanwhile, or time it again."""
        filler = self.policy.caller_stopped(self._now_ms())
        if filler is not None:
            await self._say(filler)
        elif self.policy.due_at_ms() is not None:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().create_task(self._fill_when_due())

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _fill_when_due(self) -> None:
        due = self.policy.due_at_ms()
        if due is None:
            return
        await asyncio.sleep(max(0.0, due - self._now_ms()) / 1000)
        filler = self.policy.poll(self._now_ms())
        if filler is not None:  # None: answered meanwhile, or held while the caller speaks
            await self._say(filler)

    async def _say(self, filler: FillerSpoken) -> None:
        if self._service is None:
            return
        await self._publish(filler)  # before its audio: the timeline marks that audio
        instructions = FILLER_INSTRUCTION.format(line=filler.wording)
        await self._service.request_response(ResponseReason.FILLER, instructions=instructions)

    async def _publish(self, event: DelegationEvent | None) -> None:
        if event is None:
            return
        self.events.append(event)
        if self._service is not None:
            frame = RealtimeCallEventFrame(event=event, at_ms=self._now_ms())
            await self._service.push_frame(frame)


def realtime_backend(
    settings: DelegationSettings, openai_api_key: str | None = None, base_url: str | None = None
) -> LLMService[Any]:
    """The backend's LLM service, told it answers a voice assistant's requests."""
    told = f"{LOCAL_PAIRING_INSTRUCTION}\n\n{settings.instructions}"
    return backend_llm(dataclasses.replace(settings, instructions=told), openai_api_key, base_url)


async def ask_backend(service: LLMService[Any], request: str) -> str:
    """The backend's whole answer to ``request`` (its system instruction is its own)."""
    context = LLMContext(messages=[{"role": "user", "content": request}])
    stream = await service.get_chat_completions(context)  # type: ignore[attr-defined]
    pieces: list[str] = []
    try:
        async for chunk in stream:
            for choice in chunk.choices or []:
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
    finally:
        close = getattr(stream, "aclose", None) or getattr(stream, "close", None)
        if close is not None:
            await close()
    answer = "".join(pieces).strip()
    if not answer:
        raise ValueError("the backend answered nothing")
    return answer


__all__ = [
    "DELEGATE_TOOL",
    "FRONTEND_INSTRUCTION",
    "RealtimeDelegation",
    "ask_backend",
    "realtime_backend",
]
