"""A scripted brain for multi-agent calls: it answers as the agent the session is set up as.

:class:`ScriptedAgentsBrain` needs no models. Each response's request carries
the session's instructions as its system message; the brain finds the agent
whose instructions they begin with and says that agent's next scripted line,
optionally followed by a function call in the same response (a transfer line
and then ``transfer_to_billing``, as a model says "let me transfer you" and
calls the tool). So the session's ``session.update`` decides who speaks, as
it does with a real model, and a test or an offline example can show which
agent answered each response (:attr:`ScriptedAgentsBrain.answered`).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from voxpipe.realtime_server.effects import BrainOutput, BrainRequest, FunctionCallProduced
from voxpipe.transports.realtime_server.brains import ScriptedBrain, Voice


@dataclasses.dataclass(frozen=True)
class AgentLine:
    """One scripted response: words to say, then (optionally) a function call."""

    say: str
    call: str | None = None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AgentScript:
    """An agent's instructions (how the brain recognises it) and its lines, in order."""

    instructions: str
    lines: Sequence[AgentLine]


@dataclasses.dataclass(frozen=True)
class Answered:
    """Response ``response_id`` was answered as ``agent`` with these tools offered."""

    response_id: str
    agent: str | None
    instructions: str
    tools: tuple[str, ...]


class ScriptedAgentsBrain:
    """Answers each response with the next line of the agent the instructions name.

    An agent's lines cycle; a session whose instructions match no agent gets
    ``fallback_line``.
    """

    def __init__(
        self,
        scripts: Mapping[str, AgentScript],
        *,
        voice: Voice | None = None,
        pace: float = 4.0,
        fallback_line: str = "Sorry, could you say that again?",
    ) -> None:
        self.scripts = dict(scripts)
        self.voice = voice
        self.pace = pace
        self.fallback_line = fallback_line
        self.answered: list[Answered] = []
        self._turns: dict[str | None, int] = {}

    def agent_of(self, instructions: str) -> str | None:
        """The agent whose instructions ``instructions`` begin with (the longest match)."""
        matches = [
            (len(script.instructions), name)
            for name, script in self.scripts.items()
            if instructions.startswith(script.instructions.rstrip())
        ]
        return max(matches)[1] if matches else None

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """This brain hears nothing it can transcribe."""
        return None

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        """Say the agent's next line; then its function call, if the line has one."""
        instructions = _system(request.messages)
        agent = self.agent_of(instructions)
        tools = tuple(str((t.get("function") or {}).get("name")) for t in request.tools)
        self.answered.append(Answered(request.response_id, agent, instructions, tools))
        turn = self._turns.get(agent, 0)
        self._turns[agent] = turn + 1
        line = AgentLine(self.fallback_line)
        if agent is not None and self.scripts[agent].lines:
            lines = self.scripts[agent].lines
            line = lines[turn % len(lines)]
        if line.say:
            speaker = ScriptedBrain([line.say], voice=self.voice, pace=self.pace)
            async for output in speaker.respond(dataclasses.replace(request, turn_index=0)):
                yield output
        if line.call is not None:
            call_id = "call_" + uuid.uuid5(uuid.NAMESPACE_OID, request.response_id).hex[:16]
            yield FunctionCallProduced(line.call, json.dumps(dict(line.arguments)), call_id)


def _system(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "system":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


__all__ = ["AgentLine", "AgentScript", "Answered", "ScriptedAgentsBrain"]
