"""A loopback stand-in for OpenAI's chat completions in a supervisor pair (no tests here).

It speaks the streamed chat-completions wire format (``data:`` chunks,
``delta.content``, ``delta.tool_calls`` with an index, id, name and argument
pieces, ``finish_reason`` ``tool_calls`` or ``stop``, then ``[DONE]``), in
either of pipecat's ``LLMWithBackend`` roles:

- the voice model (the frontend; its request offers the ``delegate`` tool):
  a caller's turn is delegated (a ``delegate`` call with no arguments, as
  pipecat's transcript strategy defines the tool); a ``Backend:`` message is
  relayed, its text said as it stands; a request with no ``delegate`` tool
  (a plain turn, no supervisor) is answered with ``plain_answer``;
- the backend (its system message says it is the backend of a voice
  assistant, as pipecat's pairing instruction and voxpipe's shorter one do):
  after ``backend_delay_s``, ``backend_answer``, after ``>> `` when the
  instruction asks for that mark (pipecat's does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from chat_stream import StreamedCall, stream_chat_answer
from loopback import serving
from pipecat.pipeline.llm_with_backend import BACKEND_MESSAGE_PREFIX, DELEGATE_TOOL_NAME
from pipecat.workers.llm.backend_llm_worker import SPOKEN_MARK

API_KEY = "sk-test-supervisor"
MODEL = "gpt-4.1-mini"
BACKEND_MARK = "backend of a voice assistant"  # in pipecat's backend pairing instruction


class Role:
    FRONTEND = "frontend"
    BACKEND = "backend"
    PLAIN = "plain"


@dataclass(frozen=True)
class Chat:
    """One chat request: which role asked, what it was told and what it answered."""

    role: str
    messages: tuple[dict[str, Any], ...]
    said: str
    delegated: bool
    at: float


@dataclass
class SupervisorChat:
    """The stand-in's state; the delays and answers may change between turns."""

    backend_answer: str = "Your balance is forty two dollars."
    backend_delay_s: float = 0.0
    plain_answer: str = "Your balance is forty two dollars."
    url: str = ""
    chats: list[Chat] = field(default_factory=list)

    def of(self, role: str) -> list[Chat]:
        return [c for c in self.chats if c.role == role]

    def relays(self) -> list[Chat]:
        """The frontend's chats that relayed a backend answer."""
        return [c for c in self.of(Role.FRONTEND) if c.said]

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)
        body = await request.json()
        messages = tuple(body["messages"])
        tools = [t["function"]["name"] for t in body.get("tools") or ()]
        system = " ".join(str(m.get("content")) for m in messages if m["role"] == "system")
        said, delegate = "", False
        if BACKEND_MARK in system:
            role = Role.BACKEND
            await asyncio.sleep(self.backend_delay_s)
            # pipecat's pairing instruction asks for the mark; voxpipe's own does not.
            marked = SPOKEN_MARK in system
            said = f"{SPOKEN_MARK} {self.backend_answer}" if marked else self.backend_answer
        elif DELEGATE_TOOL_NAME in tools:
            role = Role.FRONTEND
            said, delegate = _frontend_turn(messages)
        else:
            role = Role.PLAIN
            said = self.plain_answer
        self.chats.append(Chat(role, messages, said, delegate, time.monotonic()))
        return await _stream(request, said, delegate)


def _frontend_turn(messages: tuple[dict[str, Any], ...]) -> tuple[str, bool]:
    """What the voice model does: relay the latest backend answer, or delegate the caller's
    latest turn, whichever came last (its own lines, the filler's among them, do not count)."""
    for message in reversed(messages):
        content = str(message.get("content") or "")
        if content.startswith(BACKEND_MESSAGE_PREFIX):
            return content[len(BACKEND_MESSAGE_PREFIX) :].split("\n\n")[0].strip(), False
        if message["role"] == "user":
            return "", True
    return "", False


async def _stream(request: web.Request, said: str, delegate: bool) -> web.StreamResponse:
    call = None
    if delegate:  # a delegate call with no arguments, as pipecat's strategy defines it
        call = StreamedCall(f"call_{int(time.time())}_{id(request)}", DELEGATE_TOOL_NAME)
    return await stream_chat_answer(
        request, said, model=MODEL, completion_id="chatcmpl-supervisor", call=call
    )


@asynccontextmanager
async def running_supervisor_chat(**kwargs: Any) -> AsyncIterator[SupervisorChat]:
    """Serve the stand-in on a free loopback port; ``url`` is its ``/v1`` base."""
    fake = SupervisorChat(**kwargs)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    async with serving(app) as base:
        fake.url = f"{base}/v1"
        yield fake
