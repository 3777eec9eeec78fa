"""The local LLM as a pipecat service: llama.cpp behind pipecat's OpenAI LLM logic.

llama-cpp-python already speaks the OpenAI chat format, so this service keeps
all of pipecat's context, streaming and function-calling machinery and only
replaces where the chunks come from: a worker thread running the shared
:class:`LlamaEngine`, stopped between tokens when the response is interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from openai.types.chat import ChatCompletionChunk
from pipecat.frames.frames import StartFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe.engines import LlamaEngine, shared_llm
from voxpipe.engines.in_thread import iterate_in_thread
from voxpipe.engines.speculation import Speculation, SpeculationStats, prompt_key
from voxpipe.weights import LLM_MODEL


class LocalLLMService(OpenAILLMService):
    """Qwen2.5-0.5B-Instruct through llama.cpp, streaming tokens, with tool calls."""

    def __init__(
        self,
        *,
        engine: LlamaEngine | None = None,
        instructions: str | None = None,
        max_tokens: int = 120,
        temperature: float = 0.2,
        speculate: bool = True,
        **kwargs: Any,
    ) -> None:
        # The OpenAI client the base class builds is never used: no request leaves the process.
        kwargs.setdefault(
            "settings",
            OpenAILLMService.Settings(model=LLM_MODEL, system_instruction=instructions),
        )
        super().__init__(api_key="local", **kwargs)
        self._engine = engine
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._heard: list[str] = []  # the caller's words since the last reply began
        self._last_prefill: asyncio.Task[int] | None = None
        self._speculate = speculate
        self._speculation: Speculation[dict[str, Any]] | None = None
        self._replies = 0  # replies begun; a prefill that started before one stands down
        # speculate_reply's start, until its speculation exists; dropping bumps the epoch,
        # so a start that was dropped before it got going stands down.
        self._speculating: asyncio.Task[None] | None = None
        self._speculation_epoch = 0
        self.speculations = SpeculationStats()
        self._speculation_listeners: list[Callable[[Speculation[dict[str, Any]]], object]] = []

    async def preload(self) -> None:
        """Load the model now (:class:`~voxpipe.pipelines.session.CallSession` does so
        before the pipeline starts, so loading never counts against its start timeout)."""
        if self._engine is None:
            self._engine = await shared_llm()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.preload()

    def prefill(self, context: LLMContext, heard: str) -> asyncio.Task[int]:
        """Get ahead on the reply the caller's turn so far would get.

        Called with each transcript while the turn is still open (the chained
        pipeline wires it to the STT), so the end-of-turn wait pays for work
        the caller would otherwise wait for. With ``speculate`` (the default)
        the whole reply is generated into a :class:`Speculation`, which the
        reply replays if its prompt turns out the same and which is dropped if
        the caller goes on speaking; without it only the prompt is evaluated
        into the KV cache. Fire and forget; the task returned gives the number
        of prompt tokens evaluated (0 when speculating).
        """
        self._heard.append(heard)
        # One prefill at a time, each on the words heard when it starts: a later
        # segment's prefill must not be skipped because an earlier one holds the model.
        task = asyncio.get_running_loop().create_task(self._prefill(context, self._last_prefill))
        self._last_prefill = task
        return task

    async def _prefill(self, context: LLMContext, previous: asyncio.Task[int] | None) -> int:
        if previous is not None:
            await asyncio.wait([previous])
        replies = self._replies
        if not self._heard:
            return 0  # the reply has begun: its generation owns the model now
        engine = self._engine or await shared_llm()
        messages, tools = await self._prompt(context)
        if replies != self._replies or not self._heard:
            return 0
        messages.append({"role": "user", "content": " ".join(self._heard)})
        if not self._speculate:
            evaluated: int = await asyncio.to_thread(engine.prefill, messages, tools)
            return evaluated
        await self._drop_speculation()  # the caller said more: that reply is stale
        self._speculation = Speculation.start(
            prompt_key(messages, tools), self._generate(engine, messages, tools)
        )
        self.speculations.started += 1
        for listener in self._speculation_listeners:
            listener(self._speculation)
        return 0

    def speculate_reply(
        self, messages: list[dict[str, Any]], system_instruction: str, tools: Any
    ) -> asyncio.Task[None]:
        """Get ahead on a reply the pipeline is about to ask for, to these very messages.

        The brain switch calls it while a hang of the realtime brain is
        suspected: the re-asked answer is generated (and, through the
        speculation listeners, its first words synthesised) before the switch
        asks for it; a reply asked with the same prompt replays it, any
        other drops it. ``tools`` as the context holds them.

        A :meth:`drop_speculation` before the generation got going (its start
        awaits the prompt) stops it from starting at all: started anyway, it
        was a reply nobody would ask for, holding llama.cpp's lock for up to
        ``max_tokens`` (a hang suspected and cleared within a millisecond
        under load left one generating "The line failed while you were
        answering..." for a minute, and the re-ask of the switch that came
        later waited 51 s for its first audio).
        """
        epoch = self._speculation_epoch

        async def _start() -> None:
            engine = self._engine or await shared_llm()
            context = LLMContext(messages=list(messages), tools=tools)  # type: ignore[arg-type]
            prompt, tools_list = await self._prompt(context, system_instruction)
            if epoch != self._speculation_epoch:
                return  # dropped before it started
            await self._drop_speculation()
            self._speculation = Speculation.start(
                prompt_key(prompt, tools_list), self._generate(engine, prompt, tools_list)
            )
            self.speculations.started += 1
            for listener in self._speculation_listeners:
                listener(self._speculation)

        self._speculating = asyncio.get_running_loop().create_task(_start())
        return self._speculating

    async def drop_speculation(self) -> None:
        """A reply got ahead on is not coming after all: free the model.

        Also a speculation asked for whose generation has not started yet.
        """
        self._speculation_epoch += 1
        await self._drop_speculation()

    async def warm_up(self, system_instruction: str | None = None) -> None:
        """Page the model in and cache a system prompt, before a reply needs them.

        A fallback brain's first reply comes when another brain failed; cold,
        it waited for llama.cpp to read its weights (14.6 s to the first
        token of an 80-token prompt at load 6). ``system_instruction``
        (default: this service's) is the prompt prefix to leave in the cache.
        """
        engine = self._engine or await shared_llm()
        system = system_instruction or self._settings.system_instruction or ""  # type: ignore[attr-defined]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hello."}]
        await asyncio.to_thread(engine.prefill, messages, None)

    def add_speculation_listener(
        self, listener: Callable[[Speculation[dict[str, Any]]], object]
    ) -> None:
        """Call ``listener(speculation)`` when a speculative reply starts (must return at once).

        The chained pipeline uses it to synthesise the reply's first words ahead.
        """
        self._speculation_listeners.append(listener)

    def caller_resumed(self) -> None:
        """The caller is speaking again: a speculated reply is stale, stop it now.

        It would otherwise compete for the CPU with the transcription of what
        the caller is adding. Fire and forget.
        """
        if self._speculation is not None:
            asyncio.get_running_loop().create_task(self._drop_speculation())

    async def _drop_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            self.speculations.dropped += 1
            await speculation.cancel()

    def _generate(
        self, engine: LlamaEngine, messages: list[dict[str, Any]], tools: Any
    ) -> AsyncGenerator[dict[str, Any], None]:
        # An async generator: closing it (an interruption) stops llama.cpp at the next token.
        return iterate_in_thread(
            lambda stop: engine.stream_openai_chunks(
                messages,
                tools,
                max_tokens=self._max_tokens,
                temperature=self._temperature,
                stop=stop,
            )
        )

    async def _prompt(
        self, context: LLMContext, system_instruction: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        adapter = self.get_llm_adapter()
        params = await adapter.get_llm_invocation_params(
            context,
            system_instruction=system_instruction or self._settings.system_instruction,  # type: ignore[attr-defined]
            convert_developer_to_user=True,
        )
        messages = [dict(m) for m in params["messages"]]
        tools = params.get("tools")
        tools_list: list[dict[str, Any]] | None = (
            [dict(t) for t in tools] if isinstance(tools, list) and tools else None
        )
        return messages, tools_list

    async def get_chat_completions(self, context: LLMContext) -> Any:  # type: ignore[override]
        if self._engine is None:
            self._engine = await shared_llm()
        self._heard = []
        self._replies += 1
        messages, tools_list = await self._prompt(context)
        starting = self._speculating
        if starting is not None and not starting.done():
            # Asked for ahead of this reply (a brain switch's re-ask): it may be this one.
            await asyncio.wait([starting])
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            if speculation.key == prompt_key(messages, tools_list):
                self.speculations.used += 1
                return _chunks(speculation.replay())
            self.speculations.dropped += 1
            await speculation.cancel()
        return _chunks(self._generate(self._engine, messages, tools_list))


async def _chunks(
    stream: AsyncGenerator[dict[str, Any], None],
) -> AsyncIterator[ChatCompletionChunk]:
    try:
        async for item in stream:
            yield ChatCompletionChunk.model_validate(item)
    finally:
        # Closed early (an interruption): close the source now, not when it is collected,
        # so the generation stops and the model is free before the next turn.
        await stream.aclose()
