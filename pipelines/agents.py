"""Multi-agent calls on either path: what the graph builders need from ``[agents]``.

:func:`plan_agents` turns the agents of ``agent.toml`` and the application's
tools into what a graph starts with (the first agent's instructions and
tools) and the Realtime tool objects every agent draws on; it runs the
pre-call checks (an agent's tool the application did not give, a transfer
tool name taken by an application tool) and logs each instruction-length
warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.adapters.llm.services.open_ai_realtime_adapter import OpenAIRealtimeLLMAdapter

from voxpipe.agents import AgentsConfig, BrainPath
from voxpipe.handoff import agent_tools


@dataclass(frozen=True)
class AgentsPlan:
    """The start of a multi-agent call and the tools its agents draw on."""

    instructions: str
    app_tools: dict[str, dict[str, Any]]  # the application's, as Realtime tool objects
    start_tools: tuple[dict[str, Any], ...]  # the first agent's: its own, then transfers
    voice: str | None = None  # the agents' one voice, if they name one


def plan_agents(
    agents: AgentsConfig, tools: Sequence[Any], path: BrainPath = BrainPath.REALTIME
) -> AgentsPlan:
    """Check the agents against ``tools`` for ``path``; what the call starts with."""
    app_tools = realtime_tools(tools)
    agents.check(path, provided_tools=app_tools)
    for warning in agents.warnings():
        logger.warning(str(warning))
    start = agents.agent(agents.start)
    return AgentsPlan(
        start.instructions,
        app_tools,
        agent_tools(agents, start.name, app_tools),
        agents.realtime_voice(),
    )


def realtime_tools(tools: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Direct functions or ``FunctionSchema`` objects as Realtime function tools, by name."""
    if not tools:
        return {}
    schema = ToolsSchema(standard_tools=list(tools))
    converted = OpenAIRealtimeLLMAdapter().to_provider_tools_format(schema)
    return {str(tool["name"]): tool for tool in converted}


__all__ = ["AgentsPlan", "plan_agents", "realtime_tools"]
