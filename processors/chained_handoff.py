"""Handoffs on the chained path: a transfer tool swaps the agent in the LLM's context.

:class:`ChainedHandoffs` registers one handler for every ``transfer_to_<name>``
tool on the chained LLM. The decision is the shared
:class:`~voxpipe.handoff.AgentRoster`'s (as on the realtime path); what is
left here is carrying it out on pipecat's ``LLMContext``, in this order:

1. the system message and the tools become the new agent's at once (an
   inference that a caller's turn starts meanwhile answers as the new agent),
   and the transfer's result goes back with ``run_llm=False``, so the
   assistant aggregator records it without running the LLM itself;
2. once the context holds it (``on_context_updated``): the context is
   bounded, the new agent's instructions with a summary of what the caller
   heard before the last ``keep_turns`` turns, then those turns verbatim; the
   transfer call and its result stay;
3. then the LLM runs (an ``LLMRunFrame``): the new agent's first reply.

An agent with a ``voice`` of its own (or the call's default voice, for one
without) speaks in it: with the instructions, a
``TTSUpdateSettingsFrame(voice=...)`` goes downstream to the TTS, which
takes it from the next response on (the local TTS does so at the next
``LLMFullResponseStartFrame``; the rest of the transfer line keeps the old voice).

The chained LLM takes its instructions from the context's system message
(it is built with none of its own), so swapping that message is all a switch
of instructions takes. The same ``handoff`` events as the realtime path go
into the timeline (:class:`~voxpipe.frames.RealtimeCallEventFrame`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    FunctionCallResultProperties,
    LLMRunFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.settings import TTSSettings

from voxpipe.agents import AgentsConfig
from voxpipe.call.events import CallEvent, HandoffApplied, HandoffStarted, TransferRefused
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.handoff import (
    REASON_PARAMETER,
    AgentRoster,
    HandoffDecided,
    TransferNotAllowed,
    bounded_messages,
    transfer_tool_schema,
)


class ChainedHandoffs:
    """The agents of a chained call (see the module docstring).

    Args:
        agents: the agents; the call starts with ``agents.start``.
        tools: the application's tools (direct functions or ``FunctionSchema``);
            each agent is offered the ones it lists.
        now_ms: the clock the timeline events are stamped with.
    """

    def __init__(
        self, agents: AgentsConfig, tools: Sequence[Any], now_ms: Callable[[], float]
    ) -> None:
        self.roster = AgentRoster(agents)
        self.events: list[CallEvent] = []
        # The voice of an agent without one (None: it keeps the voice it is handed).
        self._default_voice: str | None = None
        self.voice = agents.voice_of(agents.start, None)  # the voice speaking now
        self._tools = {_tool_name(tool): tool for tool in tools}
        self._now_ms = now_ms

    def local_voices(self, default: str, known: Sequence[str]) -> str:
        """The call speaks with the local TTS, ``default`` its voice: the first agent's voice.

        Every agent's ``voice`` must be one of ``known`` (an ``AgentsConfigError``).
        """
        agents = self.roster.agents
        agents.check_voices(known, "local TTS")
        self._default_voice = default
        self.voice = agents.voice_of(agents.start, default)
        return self.voice or default

    def start_context(self) -> LLMContext:
        """The first agent's context: its instructions and its tools."""
        start = self.roster.spec
        messages: list[Any] = [{"role": "system", "content": start.instructions}]
        return LLMContext(messages=messages, tools=self.tools_of(start.name))

    def tools_of(self, agent: str) -> ToolsSchema:
        """Agent ``agent``'s tools: its own, then its transfers."""
        agents = self.roster.agents
        spec = agents.agent(agent)
        transfers = [_transfer_schema(agents, target) for target in spec.handoffs]
        return ToolsSchema(standard_tools=[*(self._tools[t] for t in spec.tools), *transfers])

    def register(self, llm: Any) -> None:
        """Answer every transfer tool any agent has."""
        names = {
            name for spec in self.roster.agents.agents.values() for name in spec.transfer_tools
        }
        for name in sorted(names):
            llm.register_function(name, self._on_transfer)

    async def _on_transfer(self, params: FunctionCallParams) -> None:
        decision = self.roster.transfer(
            params.function_name, dict(params.arguments), params.tool_call_id
        )
        if isinstance(decision, TransferNotAllowed):
            await self._refuse(params, decision)
            return
        started_ms = self._now_ms()
        await self._publish(params, self._started(decision, params.context))
        # At once, so that an inference a caller's turn starts meanwhile runs as the new
        # agent (the old one never speaks after the transfer); the context is bounded below.
        self._swap_instructions(params.context, decision)
        await self._switch_voice(params, decision.current)

        async def take_over() -> None:
            self._swap(params.context, decision)
            waited = int(self._now_ms() - started_ms)
            await self._publish(
                params, HandoffApplied(decision.previous, decision.current, waited, False, True)
            )
            await params.llm.push_frame(LLMRunFrame(), FrameDirection.UPSTREAM)

        await params.result_callback(
            json.loads(self.roster.transfer_output(decision)),
            properties=FunctionCallResultProperties(run_llm=False, on_context_updated=take_over),
        )

    async def _switch_voice(self, params: FunctionCallParams, agent: str) -> None:
        voice = self.roster.agents.voice_of(agent, self._default_voice)
        if voice is None or voice == self.voice:
            return
        self.voice = voice
        await params.llm.push_frame(TTSUpdateSettingsFrame(delta=TTSSettings(voice=voice)))

    async def _refuse(self, params: FunctionCallParams, refused: TransferNotAllowed) -> None:
        available = list(self.roster.spec.transfer_tools)
        await self._publish(params, TransferRefused(refused.agent, refused.tool))
        await params.result_callback(json.loads(refused.output(available)))

    def _started(self, decided: HandoffDecided, context: LLMContext) -> HandoffStarted:
        keep = self.roster.agents.settings.keep_turns
        head, _ = _split_at_call(context.get_messages(), decided.tool_call_id)
        bounded = bounded_messages(head, decided.instructions, keep)
        summary = str(bounded[0]["content"])[len(decided.instructions) :].strip()
        turns = [m for m in head if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        return HandoffStarted(
            decided.previous,
            decided.current,
            decided.reason,
            decided.tool_call_id,
            kept_turns=len(bounded) - 1,
            dropped_items=max(0, len(turns) - (len(bounded) - 1)),
            summary_chars=len(summary),
        )

    def _swap_instructions(self, context: LLMContext, decided: HandoffDecided) -> None:
        messages = list(context.get_messages())
        if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            messages[0] = {"role": "system", "content": decided.instructions}
            context.set_messages(messages)
        context.set_tools(self.tools_of(decided.current))

    def _swap(self, context: LLMContext, decided: HandoffDecided) -> None:
        keep = self.roster.agents.settings.keep_turns
        head, tail = _split_at_call(context.get_messages(), decided.tool_call_id)
        messages: list[Any] = [*bounded_messages(head, decided.instructions, keep), *tail]
        context.set_messages(messages)
        context.set_tools(self.tools_of(decided.current))

    async def _publish(self, params: FunctionCallParams, event: CallEvent) -> None:
        self.events.append(event)
        await params.llm.push_frame(RealtimeCallEventFrame(event=event, at_ms=self._now_ms()))


def _split_at_call(messages: Sequence[Any], tool_call_id: str) -> tuple[list[Any], list[Any]]:
    """The messages before the assistant message that made call ``tool_call_id``, and the rest."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if calls and any(call.get("id") == tool_call_id for call in calls):
            return list(messages[:i]), list(messages[i:])
    return list(messages), []


def _transfer_schema(agents: AgentsConfig, target: str) -> FunctionSchema:
    tool = transfer_tool_schema(agents.agent(target))
    return FunctionSchema(
        name=tool["name"],
        description=tool["description"],
        properties={REASON_PARAMETER: tool["parameters"]["properties"][REASON_PARAMETER]},
        required=[],
    )


def _tool_name(tool: Any) -> str:
    if isinstance(tool, FunctionSchema):
        return tool.name
    return str(getattr(tool, "__name__", tool))


__all__ = ["ChainedHandoffs"]
