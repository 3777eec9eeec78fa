"""A loopback stand-in for OpenAI's chat completions API (``POST /v1/chat/completions``).

Built to OpenAI's API reference for the non-streaming call: a ``Bearer`` key
(401 ``invalid_api_key`` otherwise), a body with ``model`` and ``messages``
(400 ``invalid_request_error`` naming the ``param`` when one is missing or
malformed), ``tools`` of ``type: function``, ``response_format`` of
``type: json_schema``; the answer is a ``chat.completion`` object whose one
choice holds the assistant ``message`` (``content``, ``refusal``, and
``tool_calls`` with ``finish_reason: tool_calls`` when it calls a function)
and ``usage``. What it answers is the test's: ``answer(body)`` returns the
message's ``content`` (a string), a list of ``(name, arguments)`` calls, or
``{"content": ..., "calls": [...]}`` for both.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from loopback import serving

API_KEY = "sk-test-eval"
ROLES = {"system", "developer", "user", "assistant", "tool"}

Answer = str | list[tuple[str, dict[str, Any]]] | dict[str, Any]


@dataclass
class FakeChat:
    answer: Callable[[dict[str, Any]], Answer]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # status codes of refused requests

    async def completions(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._error(401, "Incorrect API key provided", "invalid_api_key", None)
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "We could not parse the JSON body of your request.", None, None)
        problem = _invalid(body)
        if problem is not None:
            return self._error(400, problem[1], None, problem[0])
        self.requests.append(body)
        answer = self.answer(body)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
        }
        finish = "stop"
        if isinstance(answer, dict):
            message["content"] = answer.get("content")
            answer = answer.get("calls", [])
        if isinstance(answer, str):
            message["content"] = answer
        elif answer:
            finish = "tool_calls"
            message["tool_calls"] = [
                {
                    "id": f"call_{i}{len(self.requests)}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(answer)
            ]
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = len(str(message["content"] or "").split()) + 10 * len(
            message.get("tool_calls", [])
        )
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
                "service_tier": "default",
                "system_fingerprint": "fp_test",
            }
        )

    def _error(self, status: int, message: str, code: str | None, param: str | None) -> Any:
        self.refused.append(status)
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        return web.json_response({"error": error}, status=status)


def _invalid(body: Any) -> tuple[str, str] | None:
    """(param, message) of the first thing the API reference says a request must have."""
    if not isinstance(body, dict):
        return "body", "the body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model", "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty array"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"messages[{i}].role", f"Invalid value for 'messages[{i}].role'"
        if m["role"] != "assistant" and not isinstance(m.get("content"), str | list):
            return f"messages[{i}].content", f"Invalid type for 'messages[{i}].content'"
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return f"tools[{i}]", f"Invalid value for 'tools[{i}]'"
    fmt = body.get("response_format")
    if fmt is not None:
        if fmt.get("type") not in ("text", "json_object", "json_schema"):
            return "response_format.type", "Invalid value for 'response_format.type'"
        if fmt["type"] == "json_schema" and not fmt.get("json_schema", {}).get("name"):
            return "response_format.json_schema.name", "Missing required parameter"
    if body.get("stream"):
        return "stream", "this stand-in answers non-streaming requests only"
    return None


@asynccontextmanager
async def running_fake_chat(answer: Callable[[dict[str, Any]], Answer]) -> AsyncIterator[FakeChat]:
    """Serve the stand-in on a free loopback port; ``url`` is its ``/v1`` base."""
    fake = FakeChat(answer)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    async with serving(app) as base:
        fake.url = f"{base}/v1"
        yield fake
