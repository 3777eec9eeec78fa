"""A loopback stand-in for OpenAI's chat completions that answers as an agent (no tests here).

It speaks the streamed chat-completions wire format (``data:`` chunks,
``delta.content``, ``delta.tool_calls`` with an index, id, name and argument
pieces, ``finish_reason`` ``tool_calls`` or ``stop``, then ``[DONE]``). Which
agent answers is read from the request's system message, with the same
scripts as the realtime server's
:class:`~voxpipe.transports.realtime_server.agent_brain.ScriptedAgentsBrain`,
so one agent file gives both paths the same conversation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from chat_stream import StreamedCall, stream_chat_answer
from loopback import serving
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe.transports.realtime_server.agent_brain import AgentLine, AgentScript

API_KEY = "sk-test-agents"
MODEL = "gpt-4.1-mini"


@dataclass(frozen=True)
class Chat:
    """One chat request: the agent that answered it, the tools offered, the messages."""

    agent: str | None
    tools: tuple[str, ...]
    messages: tuple[dict[str, Any], ...]


@dataclass
class AgentsChat:
    """The stand-in's state."""

    scripts: Mapping[str, AgentScript]
    url: str = ""
    chats: list[Chat] = field(default_factory=list)
    _turns: dict[str | None, int] = field(default_factory=dict)

    def llm_service(self) -> OpenAILLMService:
        """pipecat's OpenAI chat service, pointed at this stand-in."""
        settings = OpenAILLMService.Settings(model="m")
        return OpenAILLMService(api_key=API_KEY, base_url=self.url, settings=settings)

    def agent_of(self, system: str) -> str | None:
        matches = [
            (len(script.instructions), name)
            for name, script in self.scripts.items()
            if system.startswith(script.instructions.rstrip())
        ]
        return max(matches)[1] if matches else None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)
        body = await request.json()
        messages = tuple(body["messages"])
        system = next((str(m["content"]) for m in messages if m["role"] == "system"), "")
        agent = self.agent_of(system)
        tools = tuple(t["function"]["name"] for t in body.get("tools") or ())
        self.chats.append(Chat(agent, tools, messages))
        turn = self._turns.get(agent, 0)
        self._turns[agent] = turn + 1
        line = AgentLine("Sorry?")
        if agent is not None:
            lines = self.scripts[agent].lines
            line = lines[turn % len(lines)]
        call = None
        if line.call is not None:
            arguments = json.dumps(dict(line.arguments))
            call = StreamedCall(f"call_{len(self.chats)}", line.call, arguments)
        return await stream_chat_answer(
            request, line.say, model=MODEL, completion_id="chatcmpl-agents", call=call
        )


@asynccontextmanager
async def running_agents_chat(scripts: Mapping[str, AgentScript]) -> AsyncIterator[AgentsChat]:
    """Serve the stand-in on a free loopback port; ``url`` is its ``/v1`` base."""
    fake = AgentsChat(scripts)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    async with serving(app) as base:
        fake.url = f"{base}/v1"
        yield fake
