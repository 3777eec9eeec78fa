"""The local LLM: Qwen2.5-0.5B-Instruct through llama-cpp-python, streaming, with tool calls."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxpipe import weights

# Messages are dropped from the front of a conversation that outgrows the context in
# blocks this long, so the cut stays put for several turns and the KV cache of the
# prompt's prefix stays warm between them.
TRIM_BLOCK = 8
# Room kept for the chat template's own tokens beyond the reply's max_tokens.
CONTEXT_MARGIN = 32
# The reply length prefill assumes when fitting the prompt (stream_chat's default).
PREFILL_MAX_TOKENS = 200


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for."""

    name: str
    arguments: str
    call_id: str


@dataclass(frozen=True)
class LLMChunk:
    """One streamed piece of a chat reply: a text delta, or the final tool calls."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class GenerationStats:
    """One generation's prompt work: how much of the prompt llama.cpp's KV cache held."""

    prompt_tokens: int
    cached_tokens: int
    first_token_ms: float


@dataclass
class GenerationUsage:
    """Tokens one reply took, summed over its generations (a retry after a bad tool call)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def as_openai(self) -> dict[str, Any]:
        """The ``usage`` object of a chat completion."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


class LlamaEngine:
    """Qwen2.5-0.5B-Instruct (GGUF) through llama-cpp-python: streaming, with tool calls.

    Prompts are rendered with the model's own chat template (Qwen's tool format:
    a JSON object ``{"name", "arguments"}`` per call). Two measured weaknesses of
    a 0.5B model are handled here rather than left to every caller: after a tool
    result it tends to call the tool again, so earlier tool exchanges are shown
    to it as plain notes and it answers without tools; and a call to a tool it
    was not given is discarded and the reply regenerated as text.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        n_threads_batch: int | None = None,
        seed: int | None = None,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = model_path or weights.llm_path()
        self.n_ctx = n_ctx
        # None: each generation draws the next seed of llama.cpp's chain (a process's Nth
        # reply depends on N). A fixed seed samples every generation alike, so one prompt
        # gets one reply in whichever process asks it (``voxpipe batch``'s backends agree).
        self.seed = seed
        # n_threads decodes one token at a time (the reply); n_threads_batch evaluates
        # many at once (the prompt, a prefill). None: llama-cpp-python's default, every core.
        self._llm = Llama(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            verbose=False,
        )
        self.n_threads: int = self._llm.n_threads
        self.n_threads_batch: int = self._llm.n_threads_batch
        self._threads_applied = (self.n_threads, self.n_threads_batch)
        self._format = Jinja2ChatFormatter(
            self._llm.metadata["tokenizer.chat_template"],
            eos_token="<|im_end|>",
            bos_token="",
            add_generation_prompt=True,
        )
        self._lock = threading.Lock()
        self.generations: list[GenerationStats] = []  # the latest few, for profiling

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        """Use these thread counts from the next generation or prefill on.

        A generation already running keeps its threads: llama.cpp's context is
        only touched from the thread that holds the engine's lock.
        """
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch or n_threads

    def _apply_threads(self) -> None:
        wanted = (self.n_threads, self.n_threads_batch)
        if wanted != self._threads_applied:
            self._llm._ctx.set_n_threads(*wanted)
            self._threads_applied = wanted

    def _render(self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        prompt: str = self._format(messages=chat, tools=tools).prompt  # type: ignore[arg-type]
        return prompt

    def _prompt_tokens(self, prompt: str) -> int:
        return len(self._llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def _fitted(
        self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int
    ) -> str:
        """The prompt, with the oldest turns dropped while it would not fit the context.

        The instructions (leading system messages) and the newest message always
        stay; the cut moves in blocks of ``TRIM_BLOCK`` messages and never leaves a
        tool result without the call before it. A call 100 turns long answers as
        one 10 turns long does, remembering what fits.
        """
        budget = self.n_ctx - max_tokens - CONTEXT_MARGIN
        prompt = self._render(chat, tools)
        if self._prompt_tokens(prompt) <= budget:
            return prompt
        head = 0
        while head < len(chat) and chat[head].get("role") == "system":
            head += 1
        system, rest = chat[:head], chat[head:]
        drop = 0
        while drop < len(rest) - 1:
            drop = min(drop + TRIM_BLOCK, len(rest) - 1)
            while drop < len(rest) - 1 and rest[drop].get("role") == "tool":
                drop += 1
            prompt = self._render(system + rest[drop:], tools)
            if self._prompt_tokens(prompt) <= budget:
                break
        return prompt

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 200,
        temperature: float = 0.2,
        stop: threading.Event | None = None,
        usage: GenerationUsage | None = None,
    ) -> Iterator[LLMChunk]:
        """Stream a reply: text deltas, then one chunk carrying any tool calls.

        The lock is held for the whole generation: llama.cpp's context is
        single-threaded, and one generation at a time keeps the KV cache of the
        conversation's prefix warm for the next turn.
        """
        chat = _plain_tool_history(messages)
        offer_tools = bool(tools) and messages[-1].get("role") != "tool"
        with self._lock:
            prompt = self._fitted(chat, tools if offer_tools else None, max_tokens)
            pieces = self._generate(prompt, max_tokens, temperature, stop, usage)
            if not offer_tools:
                for piece in pieces:
                    yield LLMChunk(text=piece)
                return
            head = ""
            for piece in pieces:
                head += piece
                if head.strip():
                    break
            # Qwen writes a call as bare JSON, sometimes inside a ``` fence.
            if not head.lstrip().startswith(("{", "`")):
                yield LLMChunk(text=head)
                for piece in pieces:
                    yield LLMChunk(text=piece)
                return
            calls = _parse_tool_calls(head + "".join(pieces), tools or [])
            if calls:
                yield LLMChunk(tool_calls=calls)
                return
            # Not a call to a tool it has: answer in words instead.
            prompt = self._fitted(chat, None, max_tokens)
            for piece in self._generate(prompt, max_tokens, temperature, stop, usage):
                yield LLMChunk(text=piece)

    def prefill(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> int:
        """Evaluate the prompt ``messages`` would get into the KV cache; generate nothing.

        Called while the end of the caller's turn is still being decided, so the
        reply's generation finds its prompt already evaluated and samples at once.
        Returns the tokens evaluated; 0 when a generation holds the model (it
        owns the cache) or the prompt is cached already.
        """
        chat = _plain_tool_history(messages)
        offer_tools = bool(tools) and messages[-1].get("role") != "tool"
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            self._apply_threads()
            prompt = self._fitted(chat, tools if offer_tools else None, PREFILL_MAX_TOKENS)
            tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
            cached = _common_prefix(self._llm._input_ids.tolist(), tokens)
            if cached >= len(tokens):
                return 0
            self._llm.n_tokens = cached  # eval drops the KV cache past this point
            self._llm.eval(tokens[cached:])
            return len(tokens) - cached
        finally:
            self._lock.release()

    def stream_openai_chunks(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int = 200,
        temperature: float = 0.2,
        stop: threading.Event | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The same reply as OpenAI ``chat.completion.chunk`` dicts, ending with its usage."""
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": weights.LLM_MODEL,
        }
        finish = "stop"
        usage = GenerationUsage()
        for chunk in self.stream_chat(messages, tools, max_tokens, temperature, stop, usage):
            delta: dict[str, Any] = {"role": "assistant"}
            if chunk.text:
                delta["content"] = chunk.text
            if chunk.tool_calls:
                finish = "tool_calls"
                delta["tool_calls"] = [
                    {
                        "index": i,
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for i, call in enumerate(chunk.tool_calls)
                ]
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {**base, "choices": [], "usage": usage.as_openai()}

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        stop: threading.Event | None,
        usage: GenerationUsage | None = None,
    ) -> Iterator[str]:
        self._apply_threads()
        tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
        cached = _common_prefix(self._llm._input_ids.tolist(), tokens)
        if usage is not None:
            usage.prompt_tokens += len(tokens)
            usage.cached_tokens += cached
        started = time.perf_counter()
        stream = self._llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=["<|im_end|>"],
            stream=True,
            seed=self.seed,
        )
        first = True
        try:
            for part in stream:
                if first:
                    first = False
                    elapsed = (time.perf_counter() - started) * 1000
                    self.generations = [
                        *self.generations[-63:],
                        GenerationStats(len(tokens), cached, elapsed),
                    ]
                if usage is not None:
                    usage.completion_tokens += 1  # llama.cpp streams one token per part
                if stop is not None and stop.is_set():
                    return
                text = part["choices"][0]["text"]  # type: ignore[index]
                if text:
                    yield text
        finally:
            stream.close()  # type: ignore[union-attr]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _plain_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Show earlier tool calls and results to the model as notes, not as calls to repeat."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                names[call.get("id", "")] = call["function"]["name"]
            if message.get("content"):
                out.append({"role": "assistant", "content": message["content"]})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "the tool")
            out.append(
                {
                    "role": "system",
                    "content": f"The tool {name} returned: {_text(message.get('content'))}. "
                    "Use it to answer the caller now, in one short sentence.",
                }
            )
        else:
            out.append({"role": role, "content": _text(message.get("content"))})
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _parse_tool_calls(text: str, tools: list[dict[str, Any]]) -> list[ToolCall]:
    known = {t.get("function", t).get("name") for t in tools}
    calls = []
    decoder = json.JSONDecoder()
    index = 0
    while (start := text.find("{", index)) != -1:
        try:
            obj, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict) and obj.get("name") in known:
            arguments = obj.get("arguments", {})
            if isinstance(arguments, str):
                arguments = _loads_or_empty(arguments)
            calls.append(
                ToolCall(obj["name"], json.dumps(arguments), f"call_{uuid.uuid4().hex[:20]}")
            )
    return calls


def _loads_or_empty(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return {}
