"""Who has the call among the agents of ``agent.toml``, and what a transfer tool call means.

:class:`AgentRoster` is the one handoff decision both paths share: the
realtime call core (:mod:`voxpipe.call.handoff_call`) and the chained
pipeline's handoff processor ask it what a tool call named
``transfer_to_<name>`` does, and it answers with a :class:`HandoffDecided`
(the next agent, its instructions and tools) or a :class:`TransferNotAllowed`
(a transfer this agent does not have: the model is told so in the tool's
output, and the call stays where it is; a model calling a transfer tool that
does not exist is a reported failure of other frameworks).

:func:`bounded_messages` is what the new agent sees on the chained path: its
own instructions with a summary of the call so far (from the transcript the
caller heard), plus the last ``keep_turns`` turns verbatim. The realtime path
bounds its session's items the same way through the call's
:class:`~voxpipe.call.record.ConversationRecord`.

Sans-I/O: no clock, no sockets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from voxpipe.agents import TRANSFER_PREFIX, AgentsConfig, AgentSpec
from voxpipe.call.rollover import ExtractiveSummariser, Role, Turn

REASON_PARAMETER = "reason"
SUMMARY_HEADING = "Summary of the call so far (what the caller heard):"


@dataclasses.dataclass(frozen=True)
class HandoffDecided:
    """The caller goes from agent ``previous`` to ``current``."""

    previous: str
    current: str
    reason: str
    tool_call_id: str
    instructions: str
    tool_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TransferNotAllowed:
    """Agent ``agent`` called ``tool``, a transfer it does not have; the call stays."""

    agent: str
    tool: str
    tool_call_id: str

    def output(self, available: Sequence[str]) -> str:
        """The tool output that tells the model so."""
        return json.dumps(
            {
                "error": f"{self.tool} does not exist",
                "transfers_available": list(available),
            }
        )


class AgentRoster:
    """Which agent has the call, and the handoffs so far."""

    def __init__(self, agents: AgentsConfig) -> None:
        self.agents = agents
        self.current = agents.start
        self.handoffs: list[HandoffDecided] = []

    @property
    def spec(self) -> AgentSpec:
        """The agent that has the call."""
        return self.agents.agent(self.current)

    @staticmethod
    def is_transfer(tool_name: str) -> bool:
        """Whether ``tool_name`` is a transfer tool's name (the roster answers it)."""
        return tool_name.startswith(TRANSFER_PREFIX)

    def transfer(
        self, tool_name: str, arguments: str | Mapping[str, Any], tool_call_id: str
    ) -> HandoffDecided | TransferNotAllowed:
        """The model called ``tool_name``: hand the call on, or say it cannot be."""
        target = self.spec.transfer_tools.get(tool_name)
        if target is None:
            return TransferNotAllowed(self.current, tool_name, tool_call_id)
        spec = self.agents.agent(target)
        decided = HandoffDecided(
            self.current,
            target,
            _reason(arguments),
            tool_call_id,
            spec.instructions,
            spec.tool_names,
        )
        self.current = target
        self.handoffs.append(decided)
        return decided

    def transfer_output(self, decided: HandoffDecided) -> str:
        """The transfer tool's output: the model learns it now speaks as the new agent."""
        return json.dumps({"transferred_to": decided.current, "reason": decided.reason})


def transfer_tool_schema(target: AgentSpec) -> dict[str, Any]:
    """The Realtime function tool that hands the caller to ``target``."""
    about = target.description or f"the {target.name} agent"
    return {
        "type": "function",
        "name": f"{TRANSFER_PREFIX}{target.name}",
        "description": f"Transfer the caller to {about}.",
        "parameters": {
            "type": "object",
            "properties": {
                REASON_PARAMETER: {
                    "type": "string",
                    "description": "Why the caller is transferred, in a few words.",
                }
            },
            "required": [],
        },
    }


def agent_tools(
    agents: AgentsConfig, name: str, app_tools: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, Any], ...]:
    """Agent ``name``'s Realtime tool objects: its own (from ``app_tools``), then transfers."""
    spec = agents.agent(name)
    own = [app_tools[tool] for tool in spec.tools]
    transfers = [transfer_tool_schema(agents.agent(target)) for target in spec.handoffs]
    return (*own, *transfers)


def bounded_messages(
    messages: Sequence[Mapping[str, Any]], instructions: str, keep_turns: int
) -> list[dict[str, Any]]:
    """The chained context the new agent starts from.

    Its own ``instructions`` as the only system message (the previous
    agent's are gone), with a summary of the user and assistant turns older
    than the last ``keep_turns``; those last turns verbatim. Tool calls and
    their results are not carried (the summary and the turns hold what came
    of them).
    """
    turns = [
        (str(m["role"]), str(m["content"]))
        for m in messages
        if m.get("role") in ("user", "assistant")
        and isinstance(m.get("content"), str)
        and str(m["content"]).strip()
    ]
    older, kept = turns[: max(0, len(turns) - keep_turns)], turns[-keep_turns:]
    system = instructions
    if older:
        summary = ExtractiveSummariser().summarise(
            [Turn(Role.USER if role == "user" else Role.ASSISTANT, text) for role, text in older],
            None,
        )
        system = f"{instructions.rstrip()}\n\n{SUMMARY_HEADING}\n{summary}"
    return [{"role": "system", "content": system}] + [
        {"role": role, "content": text} for role, text in kept
    ]


def _reason(arguments: str | Mapping[str, Any]) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return ""
    if not isinstance(arguments, Mapping):
        return ""
    reason = arguments.get(REASON_PARAMETER)
    return reason.strip() if isinstance(reason, str) else ""


__all__ = [
    "AgentRoster",
    "HandoffDecided",
    "TransferNotAllowed",
    "agent_tools",
    "bounded_messages",
    "transfer_tool_schema",
]
