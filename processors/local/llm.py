"""The local LLM as a pipecat service: llama.cpp behind pipecat's OpenAI LLM logic.

llama-cpp-python already speaks the OpenAI chat format, so this service keeps
all of pipecat's context, streaming and function-calling machinery and only
replaces where the chunks come from: a worker thread running the shared
:class:`LlamaEngine`, stopped between tokens when the response is interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from openai.types.chat import ChatCompletionChunk
from pipecat.frames.frames import StartFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe.processors.local.engines import LlamaEngine, shared_llm
from voxpipe.processors.local.in_thread import iterate_in_thread
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

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self._engine is None:
            self._engine = await shared_llm()

    def prefill(self, context: LLMContext, heard: str) -> asyncio.Task[int]:
        """Warm the KV cache with the prompt the caller's turn so far would give.

        Called with each transcript while the turn is still open (the chained
        pipeline wires it to the STT): the end-of-turn wait then pays for the
        prompt evaluation instead of the caller. Fire and forget; a running
        generation wins the model and the prefill is skipped. The task
        returned gives the number of tokens evaluated.
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
        if not self._heard:
            return 0  # the reply has begun: its generation owns the model now
        engine = self._engine or await shared_llm()
        messages, tools = await self._prompt(context)
        messages.append({"role": "user", "content": " ".join(self._heard)})
        evaluated: int = await asyncio.to_thread(engine.prefill, messages, tools)
        return evaluated

    async def _prompt(
        self, context: LLMContext
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        adapter = self.get_llm_adapter()
        params = await adapter.get_llm_invocation_params(
            context,
            system_instruction=self._settings.system_instruction,  # type: ignore[attr-defined]
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
        messages, tools_list = await self._prompt(context)
        engine = self._engine
        # An async generator: pipecat closes it (aclose) when the response is
        # interrupted, and closing it stops llama.cpp at the next token.
        return _chunks(
            iterate_in_thread(
                lambda stop: engine.stream_openai_chunks(
                    messages,
                    tools_list,
                    max_tokens=self._max_tokens,
                    temperature=self._temperature,
                    stop=stop,
                )
            )
        )


async def _chunks(stream: AsyncIterator[dict[str, Any]]) -> AsyncIterator[ChatCompletionChunk]:
    async for item in stream:
        yield ChatCompletionChunk.model_validate(item)
