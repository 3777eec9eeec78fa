"""One Daily room session as one voxpipe call: the developers' entry point.

``await DailyCall(RoomOptions(room_url, token), spec).run()`` joins the room
as the agent and runs the same call as ``voxpipe call`` or ``voxpipe serve``
(:class:`~voxpipe.pipelines.live_call.LiveCall`: graph, guardrails, timeline,
report, artifacts) until the room's call is over, then returns why it ended.
On top of the live call it carries out the room's decisions
(:mod:`voxpipe.daily.room`): greet the first human, cancel an answer whose
listener left, note on the timeline who joined, left and is listened to,
and label ``transcript.json``'s turns by participant. A join that fails
raises :class:`~voxpipe.errors.DailyJoinFailed` once the call's tasks are gone.

``DailyCallTransport`` on its own works with any graph builder too
(``build_realtime_pipeline(DailyCallTransport(url, token))``): its output
reports playback through the seam.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import TTSSpeakFrame

from voxpipe.call.response_guard import InterruptionSource, ResponseReason
from voxpipe.daily.joins import join_timed_out
from voxpipe.daily.labels import label_transcript
from voxpipe.daily.room import (
    CancelAnswer,
    EndCall,
    EndWhen,
    Greet,
    ListenTo,
    Participant,
    RoomDecision,
)
from voxpipe.pipelines.live_call import CallEnd, LiveCall, LiveCallSpec
from voxpipe.processors.realtime.service import RealtimeService
from voxpipe.timeline import EventKind
from voxpipe.transports.daily.transport import JOIN_TIMEOUT_S, DailyCallTransport

DEFAULT_GREETING = "Hello{name}! How can I help you today?"


@dataclass
class RoomOptions:
    """Which room, as whom, and how the agent behaves in it."""

    room_url: str
    token: str | None = None
    bot_name: str = "voxpipe"
    listen_to: str | None = None  # a participant's name; default: the first human
    end_when: EndWhen = EndWhen.LAST_HUMAN_LEFT
    join_timeout_s: float = JOIN_TIMEOUT_S
    greeting: str | None = DEFAULT_GREETING  # {name}: ", Alice" or ""; None: no greeting


class DailyCall:
    """The agent's call in one room session (see the module docstring)."""

    def __init__(
        self,
        options: RoomOptions,
        spec: LiveCallSpec,
        *,
        call_id: str | None = None,
        transport: DailyCallTransport | None = None,
    ) -> None:
        self.options = options
        self.transport = transport or DailyCallTransport(
            options.room_url,
            options.token,
            options.bot_name,
            listen_to=options.listen_to,
            end_when=options.end_when,
            join_timeout_s=options.join_timeout_s,
        )
        # A copy: a failed join turns recording off for this call only.
        self.call = LiveCall(call_id or _call_id(), self.transport, dataclasses.replace(spec))
        self.transport.decisions_to = self._carry_out
        self.transport.add_event_handler("on_error", self._errored)
        self.transport.add_event_handler("on_participant_joined", self._joined)
        self.transport.add_event_handler("on_participant_left", self._left)

    async def run(self) -> CallEnd:
        """Join, run the call until the room's session is over, write its artifacts."""
        ended = await self.call.run()
        failure = self.transport.failure
        if failure is None and ended is CallEnd.NEVER_CONNECTED:
            failure = join_timed_out(self.options.room_url, self.options.join_timeout_s)
        if failure is not None:
            if self.call.out_dir is not None:
                shutil.rmtree(self.call.out_dir, ignore_errors=True)  # no call took place
            raise failure
        self._label_transcript()
        return ended

    def end(self) -> None:
        """Leave the room now (the operator asked)."""
        self.call.end()

    async def _carry_out(self, decision: RoomDecision) -> None:
        now, timeline = self.transport.now_ms(), self.call.timeline
        if isinstance(decision, ListenTo):
            who = None if decision.participant is None else decision.participant.label
            timeline.add(now, EventKind.LISTENING_TO, participant=who)
        elif isinstance(decision, Greet):
            await self._greet(decision.participant.name)
        elif isinstance(decision, CancelAnswer):
            await self._cancel_answer()
        elif isinstance(decision, EndCall):
            logger.info(f"{self.options.room_url}: the call is over ({decision.reason.value})")

    async def _errored(self, _transport: Any, _error: str) -> None:
        if self.transport.joined_ms is None:  # the join failed: no call, nothing to write
            self.call.spec.record_dir = None

    async def _joined(self, _transport: Any, participant: Mapping[str, Any]) -> None:
        who = Participant.from_daily(participant)
        now = self.transport.now_ms()
        self.call.timeline.add(now, EventKind.PARTICIPANT_JOINED, participant=who.label)

    async def _left(self, _transport: Any, participant: Mapping[str, Any], reason: str) -> None:
        who = Participant.from_daily(participant)
        now = self.transport.now_ms()
        self.call.timeline.add(
            now, EventKind.PARTICIPANT_LEFT, participant=who.label, reason=reason
        )

    async def _greet(self, name: str) -> None:
        if self.options.greeting is None:
            return
        line = self.options.greeting.format(name=f", {name}" if name else "")
        brain = self.call.graph.brain
        if isinstance(brain, RealtimeService):
            instructions = f"Greet the caller with exactly this line: {line}"
            await brain.request_response(ResponseReason.GREETING, instructions=instructions)
        else:
            await self.transport.input().push_frame(TTSSpeakFrame(line))

    async def _cancel_answer(self) -> None:
        brain = self.call.graph.brain
        if isinstance(brain, RealtimeService):
            await brain.interrupt(InterruptionSource.APPLICATION)
        else:
            await self.transport.input().broadcast_interruption()

    def _label_transcript(self) -> None:
        out_dir = self.call.out_dir
        path = None if out_dir is None else out_dir / "transcript.json"
        if path is None or not path.exists():
            return
        transcript = label_transcript(json.loads(path.read_text()), self.call.timeline)
        path.write_text(json.dumps(transcript, indent=2, default=str) + "\n")


def _call_id() -> str:
    return f"daily-{uuid.uuid4().hex[:12]}"
