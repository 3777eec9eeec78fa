"""The chat LLMs evals talk to: the local llama.cpp model offline, OpenAI's chat with a key.

A simulated caller and the LLM judge need one thing of a model: a chat
completion (text, tool calls) for a list of messages. :class:`LocalChat` is
the local Qwen model (the same engine the local brain uses, shared per
process), :class:`OpenAIChat` OpenAI's chat completions API
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``). Both are blocking, run in a worker
thread by their callers. A provider's refusal is one of voxpipe's errors:
a bad key :class:`~voxpipe.errors.FatalProviderError`, a network failure or an
overload :class:`~voxpipe.errors.TransportError`, an answer that is not a chat
completion :class:`~voxpipe.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voxpipe.errors import FatalProviderError, RemoteProtocolError, TransportError
from voxpipe.evals.persona import ChatCall

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"


@dataclass(frozen=True)
class ChatReply:
    text: str
    calls: tuple[ChatCall, ...] = ()


class ChatLLM(Protocol):
    """A chat model: one completion for ``messages`` (blocking)."""

    calls_tools: bool  # whether it calls offered tools reliably (a persona's end_call)

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int = 120,
    ) -> ChatReply:
        """The model's reply; ``json_schema`` asks for a JSON object of that shape."""
        ...


class LocalChat:
    """The local Qwen model through llama.cpp, greedy (one prompt, one reply, every run).

    Offered no tools: a 0.5B model calls them unreliably, and their schema in the
    prompt tripled its prefill (measured 133 s against 50 s for a first line at load 20).
    """

    calls_tools = False

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @classmethod
    async def load(cls) -> LocalChat:
        """The process's shared local LLM (loaded once, off the event loop)."""
        from voxpipe.engines import shared_llm

        return cls(await shared_llm())

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int = 120,
    ) -> ChatReply:
        chat = [dict(m) for m in messages]
        if json_schema is not None:
            chat[0] = {**chat[0], "content": f"{chat[0]['content']}\nAnswer with JSON only."}
        text, calls = "", list[ChatCall]()
        tool_list = [dict(t) for t in tools] if tools else None
        for chunk in self.engine.stream_chat(chat, tool_list, max_tokens, 0.0):
            text += chunk.text
            calls.extend(ChatCall(c.name, c.arguments) for c in chunk.tool_calls)
        return ChatReply(text.strip(), tuple(calls))


class OpenAIChat:
    """OpenAI's chat completions API (``/v1/chat/completions``), one request per completion."""

    calls_tools = True

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = DEFAULT_OPENAI_MODEL,
        timeout_secs: float = 60.0,
    ) -> None:
        from openai import OpenAI

        self.model = model
        # The SDK retries connection errors, 408, 429 and 5xx itself (twice, backing off).
        self._client = OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_secs)

    @classmethod
    def from_env(cls, model: str | None = None) -> OpenAIChat | None:
        """With ``OPENAI_API_KEY`` set (``OPENAI_BASE_URL`` optional), else None."""
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            return None
        return cls(
            api_key=key,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            model=model or DEFAULT_OPENAI_MODEL,
        )

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int = 120,
    ) -> ChatReply:
        import openai

        request: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": 0,
            "max_completion_tokens": max_tokens,
        }
        if tools:
            request["tools"] = [dict(t) for t in tools]
        if json_schema is not None:
            request["response_format"] = {"type": "json_schema", "json_schema": dict(json_schema)}
        try:
            completion = self._client.chat.completions.create(**request)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise FatalProviderError(
                f"OpenAI chat refused the key: {_message(exc)}", code=_code(exc) or "auth"
            ) from exc
        except openai.RateLimitError as exc:
            if _code(exc) == "insufficient_quota":
                raise FatalProviderError(
                    f"OpenAI chat: {_message(exc)}", code="insufficient_quota"
                ) from exc
            raise TransportError(f"OpenAI chat is rate limited: {_message(exc)}") from exc
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            raise TransportError(f"OpenAI chat unreachable or failing: {exc}") from exc
        except openai.APIStatusError as exc:
            raise RemoteProtocolError(
                f"OpenAI chat refused the request ({exc.status_code}): {_message(exc)}",
                code=_code(exc),
            ) from exc
        if not completion.choices:
            raise RemoteProtocolError("OpenAI chat answered with no choices")
        message = completion.choices[0].message
        if getattr(message, "refusal", None):
            raise RemoteProtocolError(f"OpenAI chat refused: {message.refusal}")
        calls = tuple(
            ChatCall(call.function.name, call.function.arguments)
            for call in message.tool_calls or ()
            if call.type == "function"
        )
        return ChatReply((message.content or "").strip(), calls)


def _code(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        code = body.get("code")
        return str(code) if code is not None else None
    return None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and body.get("message"):
        return str(body["message"])
    return str(exc)
