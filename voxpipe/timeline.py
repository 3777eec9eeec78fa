"""The call timeline: what happened when, one JSON object per line.

Sans-I/O: events are appended with ``t_ms`` (milliseconds from call start)
passed in; the driver writes ``timeline.jsonl``. Turns (heard, replied,
latency) are derived from the events, never stored twice.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.Enum):
    CALL_STARTED = "call_started"
    USER_STARTED_SPEAKING = "user_started_speaking"
    USER_STOPPED_SPEAKING = "user_stopped_speaking"
    SERVER_SPEECH_STOPPED = "server_speech_stopped"  # the server VAD ended the turn
    USER_TRANSCRIPT = "user_transcript"
    RESPONSE_CREATED = "response_created"
    FIRST_BOT_AUDIO = "first_bot_audio"
    BOT_STARTED_SPEAKING = "bot_started_speaking"
    BOT_STOPPED_SPEAKING = "bot_stopped_speaking"
    ASSISTANT_TEXT = "assistant_text"
    INTERRUPTION = "interruption"
    RESPONSE_CANCELLED = "response_cancelled"
    ITEM_TRUNCATED = "item_truncated"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_FINISHED = "tool_call_finished"
    TOOL_DEDUPLICATED = "tool_deduplicated"  # a re-issued tool call answered without running again
    STATE_CHANGED = "state_changed"
    ROLLOVER = "rollover"
    RECONNECT = "reconnect"
    BRAIN_SWITCHED = "brain_switched"  # the call moved between the realtime and chained brains
    HANDOFF = "handoff"  # one agent handed the caller to another ([agents] in agent.toml)
    DELEGATION = "delegation"  # the voice agent asked its backend model, or the answer came
    FILLER = "filler"  # "one moment": the backend's wait passed the threshold ([delegate])
    TRANSPORT_REJOINED = "transport_rejoined"  # the caller's new connection carries the call on
    PARTICIPANT_JOINED = "participant_joined"  # a human joined the agent's room (Daily)
    PARTICIPANT_LEFT = "participant_left"
    LISTENING_TO = "listening_to"  # from now on the agent hears this participant only
    TOKEN_ROTATED = "token_rotated"
    GUARDRAIL_TRIPPED = "guardrail_tripped"
    RATE_LIMITS = "rate_limits"
    TURN_LATENCY = "turn_latency"  # one per turn: its boundaries and segments
    COST = "cost"  # one per priced response
    SLOT_HANDOFF = "slot_handoff"  # a chained slot handed a request on to its next engine
    SLOT_FAILED = "slot_failed"  # a chained slot could not serve a request
    ERROR = "error"
    CALL_ENDED = "call_ended"


@dataclass(frozen=True)
class TimelineEvent:
    t_ms: float
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"t_ms": round(self.t_ms, 1), "type": self.kind.value, **self.data})


@dataclass(frozen=True)
class Turn:
    """One caller turn and the bot's answer to it."""

    heard: str
    replied: str
    user_stopped_ms: float | None
    first_audio_ms: float | None  # the answer's: a filler's audio is ``filler_ms``
    interrupted: bool
    filler_ms: float | None = None  # the first filler's first audio ("one moment")

    @property
    def latency_ms(self) -> float | None:
        """To the answer's first audio: a filler said while the backend worked does not count."""
        if self.user_stopped_ms is None or self.first_audio_ms is None:
            return None
        return self.first_audio_ms - self.user_stopped_ms

    @property
    def filler_latency_ms(self) -> float | None:
        if self.user_stopped_ms is None or self.filler_ms is None:
            return None
        return self.filler_ms - self.user_stopped_ms


@dataclass
class Timeline:
    events: list[TimelineEvent] = field(default_factory=list)

    def add(self, t_ms: float, kind: EventKind, **data: Any) -> TimelineEvent:
        event = TimelineEvent(t_ms, kind, data)
        self.events.append(event)
        return event

    def of(self, kind: EventKind) -> list[TimelineEvent]:
        return [e for e in self.events if e.kind is kind]

    def jsonl(self) -> str:
        return "".join(e.to_json() + "\n" for e in sorted(self.events, key=lambda e: e.t_ms))

    def turns(self) -> list[Turn]:
        """Pair each caller turn with the bot audio and text that followed it."""
        turns: list[_TurnBuilder] = []
        bot_speaking = False
        for event in sorted(self.events, key=lambda e: e.t_ms):
            kind, current = event.kind, turns[-1] if turns else None
            if kind in (EventKind.BOT_STARTED_SPEAKING, EventKind.BOT_STOPPED_SPEAKING):
                bot_speaking = kind is EventKind.BOT_STARTED_SPEAKING
            if kind in (EventKind.USER_STOPPED_SPEAKING, EventKind.USER_TRANSCRIPT):
                if current is None or current.answered:
                    current = _TurnBuilder()
                    turns.append(current)
                if kind is EventKind.USER_STOPPED_SPEAKING:
                    current.user_stopped_ms = event.t_ms
                else:
                    current.heard.append(str(event.data.get("text", "")))
            elif current is None:
                continue
            elif kind is EventKind.FILLER:
                current.filler_due = True  # the next bot audio to start is the filler's
            elif kind is EventKind.FIRST_BOT_AUDIO and current.filler_due:
                current.filler_due = False
                current.filler_ms = current.filler_ms or event.t_ms
            elif kind is EventKind.FIRST_BOT_AUDIO and current.first_audio_ms is None:
                current.first_audio_ms = event.t_ms
            elif kind is EventKind.ASSISTANT_TEXT:
                current.replied.append(str(event.data.get("text", "")))
            elif kind is EventKind.INTERRUPTION and current.first_audio_ms is not None:
                # Every caller turn start interrupts; only one that cut the bot counts.
                current.interrupted = current.interrupted or bot_speaking
        return [t.freeze() for t in turns]


@dataclass
class _TurnBuilder:
    heard: list[str] = field(default_factory=list)
    replied: list[str] = field(default_factory=list)
    user_stopped_ms: float | None = None
    first_audio_ms: float | None = None
    interrupted: bool = False
    filler_ms: float | None = None
    filler_due: bool = False

    @property
    def answered(self) -> bool:
        return bool(self.replied) or self.first_audio_ms is not None

    def freeze(self) -> Turn:
        return Turn(
            " ".join(t for t in self.heard if t).strip(),
            " ".join(t for t in self.replied if t).strip(),
            self.user_stopped_ms,
            self.first_audio_ms,
            self.interrupted,
            self.filler_ms,
        )
