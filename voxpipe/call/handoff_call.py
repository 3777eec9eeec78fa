"""A realtime call with several agents: the transfer tool hands the session over.

:class:`HandoffCall` is a :class:`~voxpipe.call.realtime_call.RealtimeCall`
whose ``transfer_to_<name>`` tool calls are decided here (the
:class:`~voxpipe.handoff.AgentRoster` says who is next), never by pipecat's
function runner. On the realtime path a handoff is, in this order, on the
same session:

1. the transfer call arrives (``response.function_call_arguments.done``): the
   call moves to ``HANDING_OFF``; older conversation items are folded into a
   summary (built from what the caller *heard*) and deleted, the last
   ``keep_turns`` turns stay; one ``session.update`` goes out carrying only
   the new agent's instructions (with the summary) and tools. Audio formats,
   VAD and transcription are not in it, so they cannot change (a handoff that
   reset a phone call's format to PCM is a reported failure elsewhere);
2. ``session.updated``: the transfer's ``function_call_output`` goes in, the
   call is LISTENING, and one ``response.create`` asks the new agent to speak
   (after the old response ends: the response guard holds it until then). A
   ``response.create`` racing the ``session.update`` would answer with the old
   instructions; this order cannot.

While HANDING_OFF a barge-in stops the output and cuts the transfer line
(cancel, truncate to what was heard); a response the server makes on its own
then (its VAD heard the caller) is cancelled and never played: the old agent
never speaks after the handoff began. If the caller is speaking when
``session.updated`` comes, no ``response.create`` goes: their turn makes the
new agent's first response.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    InputAudioBufferSpeechStartedEvent,
    ResponseCancelEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    SessionUpdatedEvent,
    SessionUpdateEvent,
)

from voxpipe.agents import AgentsConfig, BrainPath
from voxpipe.call.commands import (
    BroadcastUserSpeech,
    Command,
    Forward,
    Publish,
    SendEvent,
    SwitchAgent,
)
from voxpipe.call.config import CallConfig
from voxpipe.call.events import HandoffApplied, HandoffStarted, IgnoreReason, TransferRefused
from voxpipe.call.realtime_call import RealtimeCall
from voxpipe.call.recovery import FailureSignal
from voxpipe.call.response_guard import InterruptionSource, ResponseReason
from voxpipe.call.state import CallState, CallTrigger
from voxpipe.handoff import AgentRoster, HandoffDecided, TransferNotAllowed, agent_tools
from voxpipe.playback import PlaybackLedger


@dataclasses.dataclass
class _Pending:
    """A handoff whose ``session.updated`` has not come yet."""

    decided: HandoffDecided
    response_id: str
    started_ms: int
    barged_in: bool = False


class HandoffCall(RealtimeCall):
    """A realtime call whose agents hand the caller on (see the module docstring).

    Args (beyond :class:`RealtimeCall`'s):
        agents: the agents of ``agent.toml``; the call starts with ``agents.start``.
        app_tools: the application's tools as Realtime function tool objects, by
            name; each agent gets those it lists, then its transfer tools.
    """

    def __init__(
        self,
        config: CallConfig | None = None,
        *,
        agents: AgentsConfig,
        app_tools: Mapping[str, dict[str, Any]],
        ledger: PlaybackLedger | None = None,
        random: Callable[[], float],
        new_id: Callable[[], str],
        now_ms: int = 0,
    ) -> None:
        super().__init__(config, ledger=ledger, random=random, new_id=new_id, now_ms=now_ms)
        agents.check(BrainPath.REALTIME, provided_tools=app_tools)
        self.roster = AgentRoster(agents)
        self._app_tools = dict(app_tools)
        self._pending: _Pending | None = None

    def tools_of(self, agent: str) -> tuple[dict[str, Any], ...]:
        """Agent ``agent``'s Realtime tools: its own, then its transfers."""
        return agent_tools(self.roster.agents, agent, self._app_tools)

    @property
    def handing_off(self) -> bool:
        """Whether a handoff waits for its ``session.updated``."""
        return self._pending is not None

    # -- the transfer call --------------------------------------------------------

    def _on_function_call(
        self, event: ResponseFunctionCallArgumentsDoneEvent, now_ms: int
    ) -> list[Command]:
        if not self.roster.is_transfer(event.name) or not self.plays(event.response_id):
            return super()._on_function_call(event, now_ms)
        if not self.machine.can(CallTrigger.HANDOFF_STARTED):
            return self._ignored(event.type, IgnoreReason.ALREADY_CALLING_TOOL)
        decision = self.roster.transfer(event.name, event.arguments, event.call_id)
        if isinstance(decision, TransferNotAllowed):
            return self._refuse(decision, now_ms)
        return self._start(decision, event.response_id, now_ms)

    def _refuse(self, refused: TransferNotAllowed, now_ms: int) -> list[Command]:
        """A transfer this agent does not have: the model hears so, as a tool's error."""
        available = list(self.roster.spec.transfer_tools)
        out = self._move(CallTrigger.TOOL_CALL_REQUESTED, now_ms)
        out.append(_tool_output(refused.tool_call_id, refused.output(available)))
        out.append(Publish(TransferRefused(refused.agent, refused.tool)))
        request_id = f"refused-{refused.tool_call_id}"
        return out + self.response_wanted(ResponseReason.TOOL_RESULT, request_id, now_ms)

    def _start(self, decided: HandoffDecided, response_id: str, now_ms: int) -> list[Command]:
        keep = self.roster.agents.settings.keep_turns
        doomed, seed = self.record.prune(keep)
        if seed is not None:
            self._seed = seed
        instructions = self.session_instructions(decided.instructions)
        tools = self.tools_of(decided.current)
        self._pending = _Pending(decided, response_id, now_ms)
        update = SessionUpdateEvent.model_validate(
            {
                "type": "session.update",
                "session": {"type": "realtime", "instructions": instructions, "tools": tools},
            }
        )
        out = self._move(CallTrigger.HANDOFF_STARTED, now_ms)
        out.append(SwitchAgent(decided.current, decided.instructions, tools))
        out += self.prune_items(doomed)
        out.append(SendEvent(update))
        summary = self.record.memory.summary or ""
        started = HandoffStarted(
            decided.previous,
            decided.current,
            decided.reason,
            decided.tool_call_id,
            kept_turns=len(self.record.memory.turns),
            dropped_items=len(doomed),
            summary_chars=len(summary),
        )
        return [*out, Publish(started)]

    def prune_items(self, doomed: list[str]) -> list[Command]:
        """Delete the items folded into the summary from the live session."""
        return [
            SendEvent(ConversationItemDeleteEvent(type="conversation.item.delete", item_id=item))
            for item in doomed
        ]

    def response_wanted(
        self,
        reason: ResponseReason,
        request_id: str,
        now_ms: int,
        *,
        instructions: str | None = None,
    ) -> list[Command]:
        """While handing off, the handoff's own response (the new agent's) answers it all."""
        if self.machine.state is CallState.HANDING_OFF:
            return self._ignored("response wanted", IgnoreReason.HANDING_OFF)
        return super().response_wanted(reason, request_id, now_ms, instructions=instructions)

    # -- the new agent takes over -------------------------------------------------

    def _on_session_updated(self, event: SessionUpdatedEvent, now_ms: int) -> list[Command]:
        if self._pending is None or self.machine.state is not CallState.HANDING_OFF:
            return super()._on_session_updated(event, now_ms)
        pending, self._pending = self._pending, None
        decided = pending.decided
        out: list[Command] = [
            Forward(event.type),
            _tool_output(decided.tool_call_id, self.roster.transfer_output(decided)),
            *self._move(CallTrigger.HANDOFF_APPLIED, now_ms),
        ]
        respond = not self.caller_speaking
        if respond:
            request_id = f"handoff-{decided.tool_call_id}"
            out += self.response_wanted(ResponseReason.TOOL_RESULT, request_id, now_ms)
        applied = HandoffApplied(
            decided.previous,
            decided.current,
            now_ms - pending.started_ms,
            pending.barged_in,
            respond,
        )
        return [*out, Publish(applied)]

    def _on_response_created(self, event: ResponseCreatedEvent, now_ms: int) -> list[Command]:
        handing_off = self.machine.state is CallState.HANDING_OFF
        out = super()._on_response_created(event, now_ms)
        response_id = event.response.id or ""
        if handing_off and response_id:
            # The server's VAD made it under the old agent: it is never played.
            self._drop(response_id)
            cancel = ResponseCancelEvent(type="response.cancel", response_id=response_id)
            out.insert(0, SendEvent(cancel))
        return out

    def _on_speech_started(
        self, event: InputAudioBufferSpeechStartedEvent, now_ms: int
    ) -> list[Command]:
        if self.machine.state is not CallState.HANDING_OFF:
            return super()._on_speech_started(event, now_ms)
        self.caller_speaking = True
        out: list[Command] = [BroadcastUserSpeech(started=True)]
        return out + self.interrupt(InterruptionSource.SERVER_VAD, now_ms)

    def interrupt(
        self, source: InterruptionSource, now_ms: int, *, as_frame: bool = False
    ) -> list[Command]:
        """A barge-in while handing off cuts the transfer line; the handoff goes on."""
        if self.machine.state is not CallState.HANDING_OFF:
            return super().interrupt(source, now_ms, as_frame=as_frame)
        if self._pending is not None:
            self._pending.barged_in = True
        if self._cut_seq == self._response_seq:
            return self._ignored("interruption", IgnoreReason.DUPLICATE_INTERRUPTION)
        return self._cut(source, now_ms, stop_output=not as_frame)

    # -- the session is lost meanwhile ----------------------------------------------

    def connection_failed(self, signal: FailureSignal, now_ms: int) -> list[Command]:
        """The transfer's call id dies with its session; the next session is the new agent's."""
        self._pending = None
        return super().connection_failed(signal, now_ms)

    def tick(self, now_ms: int) -> list[Command]:
        """Timers; a handoff whose ``session.updated`` never came is given up with its state."""
        out = super().tick(now_ms)
        if self._pending is not None and self.machine.state is not CallState.HANDING_OFF:
            self._pending = None
        return out


def _tool_output(call_id: str, output: str) -> SendEvent:
    item = ConversationItemCreateEvent.model_validate(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": output},
        }
    )
    return SendEvent(item)


__all__ = ["HandoffCall"]
