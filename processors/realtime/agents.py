"""The realtime service of a multi-agent call: a thin driver over :class:`HandoffCall`.

Everything about a handoff is decided in
:class:`~voxpipe.call.handoff_call.HandoffCall` (the transfer tool, the one
``session.update``, when the tool output and the new agent's response go).
What is left here is pipecat's own copy of the session settings: when another
agent takes the call, the instructions and tools pipecat keeps are set to
that agent's, so a ``session.update`` pipecat sends later (a reconnect's, a
rollover's) carries the agent that has the call, not the first one.

pipecat private names it touches: none beyond :class:`RealtimeService`'s;
``settings.session_properties`` and ``settings.system_instruction`` are
pipecat's public settings.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

from voxpipe.agents import AgentsConfig
from voxpipe.call.commands import Command, SwitchAgent
from voxpipe.call.handoff_call import HandoffCall
from voxpipe.processors.realtime.service import RealtimeService


class AgentsRealtimeService(RealtimeService):
    """:class:`RealtimeService` whose agents hand the caller on (``[agents]`` of agent.toml).

    Args (beyond :class:`RealtimeService`'s):
        agents: the agents; the call starts with ``agents.start``.
        app_tools: the application's tools as Realtime function tool objects, by name.
    """

    def __init__(
        self,
        *,
        agents: AgentsConfig,
        app_tools: Mapping[str, dict[str, Any]],
        random_fn: Any = random.random,
        **kwargs: Any,
    ) -> None:
        super().__init__(random_fn=random_fn, **kwargs)
        self.handoffs = HandoffCall(
            self.call.config,
            agents=agents,
            app_tools=app_tools,
            ledger=self.call.ledger,
            random=random_fn,
            new_id=lambda: f"item_vp{uuid.uuid4().hex[:20]}",
            now_ms=self._now(),
        )
        self.call = self.handoffs

    @property
    def agent(self) -> str:
        """The agent that has the call."""
        return self.handoffs.roster.current

    async def _run(self, command: Command, message: str | bytes) -> None:
        if isinstance(command, SwitchAgent):
            self._switch_agent(command)
            return
        await super()._run(command, message)

    def _switch_agent(self, command: SwitchAgent) -> None:
        settings: Any = self.settings
        settings.system_instruction = command.instructions
        settings.session_properties.instructions = command.instructions
        settings.session_properties.tools = list(command.tools)


__all__ = ["AgentsRealtimeService"]
