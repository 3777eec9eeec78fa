"""The call's controls over a sideband: events of a call voxpipe does not carry the audio of.

In direct mode the browser talks to the provider over WebRTC and voxpipe
attaches to the same session with a server-side WebSocket (the "sideband",
``GET /v1/realtime?call_id=...``). It sees every event and can send any, but
never hears or plays audio. This core decides what voxpipe does with what it
sees, with time passed in:

- a function call of a tool voxpipe owns runs on the server (:class:`RunTool`);
  its output goes back as ``function_call_output`` and a ``response.create``
  (the page never sees the tool's logic or secrets);
- the reply's transcript, which the provider sends ahead of the audio it
  plays, is scanned by the guardrail policies; a trip cancels the response
  and clears the provider's output buffer, which cuts the audio and
  truncates the item to what was played, before the unsafe words are spoken;
- the timeline, usage-based cost (:class:`~voxpipe.observability.cost.CostLedger`)
  and rate limits are recorded from the events, as for a relayed call;
- the conversation (the caller's transcripts, the replies not cut by a
  guardrail) is kept, so a new call that replaces this one (the page
  reconnected with a fresh secret) starts from its summary (:meth:`SidebandControl.seed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voxpipe.call.rollover import Role, Turn, build_seed
from voxpipe.guardrails.policy import IncrementalScanner
from voxpipe.observability.cost import CostLedger
from voxpipe.timeline import EventKind, Timeline


@dataclass(frozen=True)
class SendEvent:
    """Send this client event on the sideband."""

    event: dict[str, Any]


@dataclass(frozen=True)
class RunTool:
    """Run a server-side tool; report its output with :meth:`SidebandControl.tool_finished`."""

    call_id: str
    name: str
    arguments: str


SidebandCommand = SendEvent | RunTool


@dataclass
class _Reply:
    text: str = ""
    scanned: int = 0
    tripped: bool = False


@dataclass
class SidebandControl:
    """What voxpipe does on a direct call, from the events its sideband sees."""

    tools: frozenset[str]
    policies: Sequence[IncrementalScanner] = ()
    model: str = "gpt-realtime"
    timeline: Timeline = field(default_factory=Timeline)
    ledger: CostLedger = field(default_factory=CostLedger)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    trips: list[dict[str, Any]] = field(default_factory=list)
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    sideband_reconnects: int = 0
    _replies: dict[str, _Reply] = field(default_factory=dict)
    _tool_started: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger.model = self.model

    def attached(self, now_ms: float, call_id: str) -> None:
        """The sideband is on the call."""
        self.timeline.add(now_ms, EventKind.CALL_STARTED, call_id=call_id, mode="direct")

    def reconnected(self, now_ms: float, attempt: int) -> None:
        """The sideband came back after a blip (the page's media never stopped)."""
        self.sideband_reconnects += 1
        self.timeline.add(now_ms, EventKind.RECONNECT, leg="sideband", attempt=attempt)

    def on_event(self, event: Mapping[str, Any], now_ms: float) -> list[SidebandCommand]:
        """One server event seen on the sideband; the commands it calls for."""
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            self.timeline.add(now_ms, EventKind.USER_STARTED_SPEAKING)
        elif kind == "input_audio_buffer.speech_stopped":
            self.timeline.add(now_ms, EventKind.SERVER_SPEECH_STOPPED)
        elif kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript", ""))
            self.timeline.add(now_ms, EventKind.USER_TRANSCRIPT, text=text)
            self.turns.append(Turn(Role.USER, text, _str_or_none(event.get("item_id"))))
        elif kind == "response.created":
            self.timeline.add(now_ms, EventKind.RESPONSE_CREATED, response_id=_response_id(event))
        elif kind == "output_audio_buffer.started":
            self.timeline.add(now_ms, EventKind.BOT_STARTED_SPEAKING)
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self.timeline.add(now_ms, EventKind.BOT_STOPPED_SPEAKING, how=kind.rsplit(".", 1)[1])
        elif kind == "conversation.item.truncated":
            self.timeline.add(
                now_ms,
                EventKind.ITEM_TRUNCATED,
                item_id=event.get("item_id"),
                audio_end_ms=event.get("audio_end_ms"),
            )
        elif kind == "rate_limits.updated":
            limits = list(event.get("rate_limits") or [])
            self.rate_limits.append({"t_ms": now_ms, "rate_limits": limits})
            self.timeline.add(now_ms, EventKind.RATE_LIMITS, rate_limits=limits)
        elif kind == "response.output_audio_transcript.delta":
            response_id = str(event.get("response_id", ""))
            return self._scan(response_id, str(event.get("delta", "")), now_ms)
        elif kind == "response.output_audio_transcript.done":
            reply = self._replies.get(str(event.get("response_id", "")))
            if reply is None or not reply.tripped:  # a guardrail's cut is never seeded
                text = str(event.get("transcript", ""))
                self.turns.append(Turn(Role.ASSISTANT, text, _str_or_none(event.get("item_id"))))
        elif kind == "response.function_call_arguments.done":
            return self._tool_call(event, now_ms)
        elif kind == "response.done":
            self._response_done(event, now_ms)
        return []

    def _scan(self, response_id: str, delta: str, now_ms: float) -> list[SidebandCommand]:
        reply = self._replies.setdefault(response_id, _Reply())
        reply.text += delta
        if reply.tripped:
            return []
        for policy in self.policies:
            start = max(0, reply.scanned - policy.overlap_chars)
            verdict = policy.scan(reply.text, start)
            if verdict.tripped:
                reply.tripped = True
                trip = {"response_id": response_id, "policy": policy.name, "rule": verdict.rule}
                self.trips.append({"t_ms": now_ms, **trip})
                self.timeline.add(now_ms, EventKind.GUARDRAIL_TRIPPED, **trip)
                return [
                    SendEvent({"type": "response.cancel", "response_id": response_id}),
                    SendEvent({"type": "output_audio_buffer.clear"}),
                ]
        reply.scanned = len(reply.text)
        return []

    def _tool_call(self, event: Mapping[str, Any], now_ms: float) -> list[SidebandCommand]:
        name, call_id = str(event.get("name", "")), str(event.get("call_id", ""))
        if name not in self.tools:
            return []  # not voxpipe's: whoever owns it answers
        self._tool_started[call_id] = now_ms
        self.timeline.add(now_ms, EventKind.TOOL_CALL_STARTED, name=name, call_id=call_id)
        return [RunTool(call_id, name, str(event.get("arguments", "")))]

    def tool_finished(self, call_id: str, name: str, output: str, now_ms: float) -> list[SendEvent]:
        """A tool's output: back to the session, and the model answers with it."""
        started = self._tool_started.pop(call_id, now_ms)
        self.tool_calls.append({"call_id": call_id, "name": name, "ms": now_ms - started})
        self.timeline.add(now_ms, EventKind.TOOL_CALL_FINISHED, name=name, call_id=call_id)
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return [
            SendEvent({"type": "conversation.item.create", "item": item}),
            SendEvent({"type": "response.create"}),
        ]

    def _response_done(self, event: Mapping[str, Any], now_ms: float) -> None:
        response = event.get("response") or {}
        response_id = str(response.get("id", ""))
        status = response.get("status")
        if status == "cancelled":
            self.timeline.add(now_ms, EventKind.RESPONSE_CANCELLED, response_id=response_id)
        cost = self.ledger.record(response_id, response.get("usage"))
        self.timeline.add(now_ms, EventKind.COST, response_id=response_id, usd=str(cost.usd))
        self._replies.pop(response_id, None)

    def seed(self, base_instructions: str, now_ms: float) -> list[SendEvent]:
        """The session update that starts a call replacing this one from its conversation's
        summary (nothing if nothing was said)."""
        if not any(turn.text.strip() for turn in self.turns):
            return []
        instructions = build_seed(self.turns, keep_verbatim_turns=0).instructions(base_instructions)
        self.timeline.add(now_ms, EventKind.RECONNECT, leg="call", seeded_turns=len(self.turns))
        session = {"type": "realtime", "instructions": instructions}
        return [SendEvent({"type": "session.update", "session": session})]

    def report(self) -> dict[str, Any]:
        """The call's report: what the sideband saw (no audio: it never reached voxpipe)."""
        total = self.ledger.total
        return {
            "mode": "direct",
            "audio": "none: in direct mode the audio goes between the page and the provider",
            "responses": len(self.ledger.entries),
            "cost_usd": str(total.known_usd),
            "cost_complete": total.is_complete,
            "tokens": {k.value: self.ledger.tokens.of(k) for k in _token_kinds()},
            "tool_calls": list(self.tool_calls),
            "guardrail_trips": list(self.trips),
            "rate_limit_updates": len(self.rate_limits),
            "sideband_reconnects": self.sideband_reconnects,
        }


def _response_id(event: Mapping[str, Any]) -> str:
    response = event.get("response") or {}
    return str(response.get("id", ""))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _token_kinds() -> list[Any]:
    from voxpipe.observability.prices import TokenKind

    return list(TokenKind)
