"""OpenAI's streamed chat-completions answer, written on an aiohttp response (no tests here).

The wire format the loopback stand-ins for OpenAI's chat speak, in one place:
``data:`` chunks of ``chat.completion.chunk``, the text as ``delta.content``
word by word, an optional function call as ``delta.tool_calls`` (a head with
index, id and name, then the arguments as a piece), ``finish_reason``
``tool_calls`` or ``stop`` in a last empty delta, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class StreamedCall:
    """A function call at the end of a streamed answer."""

    call_id: str
    name: str
    arguments: str = "{}"


async def stream_chat_answer(
    request: web.Request,
    said: str,
    *,
    model: str,
    completion_id: str,
    call: StreamedCall | None = None,
) -> web.StreamResponse:
    """Stream ``said`` (and ``call``, if any) as OpenAI's chat completions does."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    created = int(time.time())

    async def send(delta: dict[str, Any], finish: str | None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    for i, word in enumerate(said.split(" ") if said else []):
        await send({"content": word if i == 0 else " " + word}, None)
    if call is not None:
        head = {"index": 0, "id": call.call_id, "type": "function"}
        head["function"] = {"name": call.name, "arguments": ""}
        await send({"tool_calls": [head]}, None)
        await send({"tool_calls": [{"index": 0, "function": {"arguments": call.arguments}}]}, None)
    await send({}, "tool_calls" if call is not None else "stop")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
