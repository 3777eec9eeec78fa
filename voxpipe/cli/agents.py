"""``[agents]`` for ``voxpipe call``, ``serve`` and ``daily``: checked before any call.

The agent file's ``start`` and ``[agents.<name>]`` tables make a multi-agent
call (:mod:`voxpipe.agents`): the ``start`` agent takes the call and each
``transfer_to_<name>`` tool hands the caller to another agent. The three
commands build the same graph, so they read the tables the same way and refuse
them the same way, each an :class:`~voxpipe.errors.AgentsConfigError` naming
the file, the key and the problem, before a server starts or an output
directory is made:

- an agent that lists ``tools``: the command line has no handler to run a
  tool, so only handoffs (the ``transfer_to_<name>`` tools voxpipe makes from
  ``handoffs``) run from it; tools with handlers need the Python API;
- a fallback brain (``--fallback chained`` or ``[fallback]``): the chained
  brain taking over would answer as no agent;
- ``serve --direct``: the page's session is set up once, with no agents;
- two voices on the realtime path, or on the chained path an agent's voice the
  local TTS does not have.

``[delegate]`` beside ``[agents]`` stays refused by
:func:`voxpipe.cli.delegate.delegate_settings`, which the commands run first.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxpipe.agents import AgentsConfig

PYTHON_API = "build_realtime_pipeline(..., tools=[...], agents=...) or build_chained_pipeline"


def agents_config(
    agent: Any, mode: str, fallback: Any = None, *, direct: bool = False
) -> AgentsConfig | None:
    """The call's agents (None: the file has no ``[agents]``), checked for ``mode``.

    ``agent`` is the loaded agent file (or None), ``fallback`` the call's
    fallback brain, if any; ``direct``: ``serve --direct``.
    """
    from voxpipe.agents import AgentsConfigError, AgentsProblem, BrainPath

    agents: AgentsConfig | None = getattr(agent, "agents", None)
    if agents is None:
        return None
    source = agents.source
    for spec in agents.agents.values():
        if spec.tools:
            tool = spec.tools[0]
            raise AgentsConfigError(
                AgentsProblem.TOOL_NEEDS_HANDLER,
                source,
                f"[agents.{spec.name}].tools",
                f"agent {spec.name!r} lists the tool {tool!r}, and the command line has no "
                f"handler to run it: tools with handlers need the Python API ({PYTHON_API})",
                hint=_tool_hint(agents, tool),
            )
    if fallback is not None:
        raise AgentsConfigError(
            AgentsProblem.CANNOT_COMBINE,
            source,
            "[agents]",
            "cannot be combined with a fallback brain: the chained brain taking over a "
            "failed realtime call would answer as no agent",
            hint="run with --fallback none, or remove [fallback] from the file",
        )
    if direct:
        raise AgentsConfigError(
            AgentsProblem.CANNOT_COMBINE,
            source,
            "[agents]",
            "cannot be combined with --direct: the page's provider session is set up once, "
            "and a handoff changes its instructions and tools",
            hint="serve without --direct (the call's audio then passes through voxpipe)",
        )
    path = BrainPath(mode)
    agents.check(path, provided_tools=())
    if path is BrainPath.CHAINED and _local_tts(agent):
        from voxpipe.engines.tts import TTSEngineKind

        agents.check_voices([kind.value for kind in TTSEngineKind], "local TTS")
    return agents


def _tool_hint(agents: AgentsConfig, tool: str) -> str:
    from voxpipe.agents import TRANSFER_PREFIX

    target = tool.removeprefix(TRANSFER_PREFIX)
    if tool.startswith(TRANSFER_PREFIX) and target in agents.agents:
        return f'a transfer tool comes from handoffs: write handoffs = ["{target}"] instead'
    return "only handoffs (transfer_to_<agent> tools) run from voxpipe call, serve and daily"


def _local_tts(agent: Any) -> bool:
    """Whether a chained call of this file speaks with the local TTS (as the builder picks)."""
    slots = getattr(agent, "chained", None)
    if slots is not None and slots.tts is not None:
        return False  # the slot's engines speak; a handed-off agent's voice is sent as given
    return not os.environ.get("OPENAI_API_KEY")
