"""What a realtime call tells the application: small frozen events, past tense.

:class:`~voxpipe.call.realtime_call.RealtimeCall` returns them inside
:class:`~voxpipe.call.commands.Publish` commands; the realtime service hands
each to its ``on_call_event`` handler and pushes it downstream in a
:class:`~voxpipe.frames.RealtimeCallEventFrame`, so an observer (the call
timeline) records it without holding the service. State transitions are the
state machine's own :class:`~voxpipe.call.state.StateChanged` and
:class:`~voxpipe.call.state.TransitionRejected`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from voxpipe.call.failover import Brain, SwitchReason
from voxpipe.call.recovery import FailureClass
from voxpipe.call.response_guard import InterruptionSource, ResponseReason
from voxpipe.call.rollover import RolloverReason
from voxpipe.call.state import CallState, StateChanged, TransitionRejected
from voxpipe.call.tool_ledger import DedupReason
from voxpipe.errors import VoxpipeError
from voxpipe.timeline import EventKind


class IgnoreReason(enum.Enum):
    """Why a provider event or a report legitimately changed nothing in the current state."""

    DUPLICATE_INTERRUPTION = "duplicate_interruption"  # this response was cut already
    NOTHING_TO_INTERRUPT = "nothing_to_interrupt"  # the bot was listening
    OWN_REQUEST = "own_request"  # response.created for the response we asked for
    CANCELLED_ON_CREATE = "cancelled_on_create"  # created after we cancelled it
    TOOL_PENDING = "tool_pending"  # the response ended; its tool call is still running
    ALREADY_CALLING_TOOL = "already_calling_tool"  # a second call in the same response
    ALREADY_SPEAKING = "already_speaking"  # a later delta of a response already heard
    STALE_RESPONSE = "stale_response"  # an event of a response that is over or was cut
    SESSION_ALREADY_READY = "session_already_ready"  # a later session.updated
    NOT_LIVE = "not_live"  # the call has no session, or has ended
    SERVER_TURNS = "server_turns"  # the server's VAD ends turns, not the local one
    HANDING_OFF = "handing_off"  # the next agent's response comes once its session.updated
    NO_TOOL_PENDING = "no_tool_pending"  # a filler asked for once its tool call was over


@dataclasses.dataclass(frozen=True)
class EventIgnored:
    """``what`` happened in ``state`` and, by design, changed nothing (``reason``)."""

    what: str
    state: CallState
    reason: IgnoreReason


@dataclasses.dataclass(frozen=True)
class ResponseRequested:
    """``response.create`` went out (or was queued behind the active response)."""

    reason: ResponseReason
    queued: bool


@dataclasses.dataclass(frozen=True)
class ResponseCreated:
    """``response.created``: the provider started response ``response_id``."""

    response_id: str


@dataclasses.dataclass(frozen=True)
class ServerSpeechStopped:
    """``input_audio_buffer.speech_stopped``: the server's VAD ended the caller's turn.

    ``audio_end_ms`` is the server's position on this session's input audio
    line; it includes the VAD's ``silence_ms`` wait, so the caller's speech
    ended at ``audio_end_ms - silence_ms``. That position lies ``offset_ms``
    into caller frame ``frame_id``, whose audio went out at ``sent_at_ms``
    (service clock). All three are None when the position is unknown: audio
    replayed into a new session, audio no longer remembered, or a VAD whose
    wait is not a fixed silence (``semantic_vad``, ``silence_ms`` None).
    """

    audio_end_ms: int
    item_id: str | None
    silence_ms: int | None
    frame_id: int | None
    offset_ms: float | None
    sent_at_ms: float | None


@dataclasses.dataclass(frozen=True)
class InterruptionHandled:
    """An interruption stopped the bot; ``cancel_sent`` says if ``response.cancel`` went out."""

    source: InterruptionSource
    item_id: str | None
    response_id: str | None
    cancel_sent: bool


@dataclasses.dataclass(frozen=True)
class ResponseCancelled:
    """``response.done`` with status ``cancelled`` (or the cancel found nothing to cancel)."""

    response_id: str | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class ItemTruncated:
    """``conversation.item.truncate`` went out: the item ends where the caller stopped hearing."""

    item_id: str
    audio_end_ms: int
    played_ms: float
    received_ms: int


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """One entry of ``rate_limits.updated``."""

    name: str
    limit: int
    remaining: int
    reset_seconds: float


@dataclasses.dataclass(frozen=True)
class RateLimitsUpdated:
    """The provider's rate limits as of the latest response."""

    limits: tuple[RateLimit, ...]

    @property
    def exhausted(self) -> bool:
        """True when any limit has nothing left."""
        return any(limit.remaining <= 0 for limit in self.limits)


@dataclasses.dataclass(frozen=True)
class ProviderErrorSeen:
    """An ``error`` event the call survived (``handled``: absorbed by a core)."""

    code: str | None
    error_type: str | None
    message: str
    handled: bool


@dataclasses.dataclass(frozen=True)
class Reconnecting:
    """The connection failed; a new one is tried after ``delay_ms``."""

    failure_class: FailureClass
    attempt: int
    delay_ms: int
    reason: str
    refresh_secret: bool


@dataclasses.dataclass(frozen=True)
class Reconnected:
    """A new session is up after a failure; ``downtime_ms`` from failure to ready."""

    failure_class: FailureClass
    attempts: int
    downtime_ms: float
    replayed_user_ms: int
    seeded_turns: int


@dataclasses.dataclass(frozen=True)
class RolledOver:
    """The call moved to a fresh session; ``switch_ms`` from start to the new session ready."""

    reason: RolloverReason
    session_age_ms: int
    input_tokens: int
    switch_ms: float
    replayed_user_ms: int
    seeded_turns: int


@dataclasses.dataclass(frozen=True)
class TokenRotated:
    """A new ephemeral secret was minted (``failed``: a mint failed and will be retried)."""

    rotations: int
    failures: int
    failed: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class CallFailed:
    """The call cannot go on: a fatal provider error, or the retry budget ran out."""

    error: VoxpipeError
    failure_class: FailureClass


@dataclasses.dataclass(frozen=True)
class BrainGaveUp:
    """The realtime brain stopped trying, and a fallback brain is there to take the call.

    What would have been :class:`CallFailed` without a fallback: the call goes on.
    """

    error: VoxpipeError
    failure_class: FailureClass


@dataclasses.dataclass(frozen=True)
class BrainSwitched:
    """The call moved from one brain to the other; ``time_on_previous_ms`` on the last one.

    ``reasked`` says whether the answer the switch cut was asked for again on
    the new brain (once); ``seeded_turns`` how many heard turns seeded it.
    """

    previous: Brain
    current: Brain
    reason: SwitchReason
    detail: str
    time_on_previous_ms: int
    seeded_turns: int = 0
    reasked: bool = False


@dataclasses.dataclass(frozen=True)
class HandoffStarted:
    """Agent ``previous`` called its transfer tool: ``current`` takes the call.

    ``kept_turns`` conversation turns stay verbatim for the new agent,
    ``dropped_items`` older items left the session (folded into a summary of
    ``summary_chars`` characters, built from what the caller heard).
    """

    previous: str
    current: str
    reason: str
    tool_call_id: str
    kept_turns: int
    dropped_items: int
    summary_chars: int


@dataclasses.dataclass(frozen=True)
class HandoffApplied:
    """``session.updated``: the new agent's instructions and tools are in force.

    ``wait_ms`` from the transfer tool call; ``barged_in``: the caller cut the
    transfer line meanwhile; ``responded``: the new agent was asked to speak
    (not when the caller is speaking: their turn makes the response).
    """

    previous: str
    current: str
    wait_ms: int
    barged_in: bool
    responded: bool


@dataclasses.dataclass(frozen=True)
class TransferRefused:
    """The model called ``tool``, a transfer its agent does not have (answered with an error)."""

    agent: str
    tool: str


@dataclasses.dataclass(frozen=True)
class ToolDeduplicated:
    """The model called ``tool`` again as ``call_id``: answered with the first run's result.

    The handler did not run (:mod:`voxpipe.call.tool_ledger`); ``idempotency_key``
    is the first run's call id, ``reason`` how the repeat was recognised,
    ``waited``: the first run was still going and the repeat waited for it.
    """

    tool: str
    call_id: str
    idempotency_key: str
    reason: DedupReason
    waited: bool


CallEvent = (
    StateChanged
    | EventIgnored
    | TransitionRejected
    | ResponseRequested
    | ResponseCreated
    | ServerSpeechStopped
    | InterruptionHandled
    | ResponseCancelled
    | ItemTruncated
    | RateLimitsUpdated
    | ProviderErrorSeen
    | Reconnecting
    | Reconnected
    | RolledOver
    | TokenRotated
    | CallFailed
    | BrainGaveUp
    | BrainSwitched
    | HandoffStarted
    | HandoffApplied
    | TransferRefused
    | ToolDeduplicated
)


def timeline_entry(event: CallEvent) -> tuple[EventKind, dict[str, Any]] | None:
    """The timeline line for ``event`` (None: not worth a line)."""
    match event:
        case StateChanged():
            return EventKind.STATE_CHANGED, {
                "from": event.previous.value,
                "to": event.current.value,
                "trigger": event.trigger.value,
            }
        case ResponseCreated():
            return EventKind.RESPONSE_CREATED, {"response_id": event.response_id}
        case ServerSpeechStopped():
            return EventKind.SERVER_SPEECH_STOPPED, {
                "audio_end_ms": event.audio_end_ms,
                "item_id": event.item_id,
                "silence_ms": event.silence_ms,
                "frame_id": event.frame_id,
                "offset_ms": None if event.offset_ms is None else round(event.offset_ms, 1),
            }
        case ResponseCancelled():
            return EventKind.RESPONSE_CANCELLED, {
                "response_id": event.response_id,
                "reason": event.reason,
            }
        case ItemTruncated():
            return EventKind.ITEM_TRUNCATED, {
                "item_id": event.item_id,
                "audio_end_ms": event.audio_end_ms,
                "played_ms": round(event.played_ms, 1),
                "received_ms": event.received_ms,
            }
        case RateLimitsUpdated():
            return EventKind.RATE_LIMITS, {
                "limits": [dataclasses.asdict(limit) for limit in event.limits]
            }
        case ProviderErrorSeen():
            return EventKind.ERROR, {
                "code": event.code,
                "message": event.message,
                "handled": event.handled,
                "fatal": False,
            }
        case Reconnecting():
            return EventKind.RECONNECT, {
                "phase": "reconnecting",
                "class": event.failure_class.value,
                "attempt": event.attempt,
                "delay_ms": event.delay_ms,
                "reason": event.reason,
            }
        case Reconnected():
            return EventKind.RECONNECT, {
                "phase": "reconnected",
                "class": event.failure_class.value,
                "attempts": event.attempts,
                "downtime_ms": round(event.downtime_ms, 1),
                "replayed_user_ms": event.replayed_user_ms,
            }
        case RolledOver():
            return EventKind.ROLLOVER, {
                "reason": event.reason.value,
                "session_age_ms": event.session_age_ms,
                "switch_ms": round(event.switch_ms, 1),
                "replayed_user_ms": event.replayed_user_ms,
                "seeded_turns": event.seeded_turns,
            }
        case TokenRotated():
            return EventKind.TOKEN_ROTATED, {
                "rotations": event.rotations,
                "failures": event.failures,
                "failed": event.failed,
            }
        case BrainGaveUp():
            return EventKind.ERROR, {
                "error": str(event.error),
                "class": event.failure_class.value,
                "fatal": False,
                "handled": True,  # the fallback brain takes the call
            }
        case BrainSwitched():
            return EventKind.BRAIN_SWITCHED, {
                "from": event.previous.value,
                "to": event.current.value,
                "reason": event.reason.value,
                "detail": event.detail,
                "time_on_previous_ms": event.time_on_previous_ms,
                "seeded_turns": event.seeded_turns,
                "reasked": event.reasked,
            }
        case HandoffStarted():
            return EventKind.HANDOFF, {
                "phase": "started",
                "from": event.previous,
                "to": event.current,
                "reason": event.reason,
                "call_id": event.tool_call_id,
                "kept_turns": event.kept_turns,
                "dropped_items": event.dropped_items,
                "summary_chars": event.summary_chars,
            }
        case HandoffApplied():
            return EventKind.HANDOFF, {
                "phase": "applied",
                "from": event.previous,
                "to": event.current,
                "wait_ms": event.wait_ms,
                "barged_in": event.barged_in,
                "responded": event.responded,
            }
        case TransferRefused():
            return EventKind.HANDOFF, {"phase": "refused", "from": event.agent, "tool": event.tool}
        case ToolDeduplicated():
            return EventKind.TOOL_DEDUPLICATED, {
                "tool": event.tool,
                "call_id": event.call_id,
                "idempotency_key": event.idempotency_key,
                "reason": event.reason.value,
                "waited": event.waited,
            }
        case CallFailed():
            return EventKind.ERROR, {
                "error": str(event.error),
                "class": event.failure_class.value,
                "fatal": True,
            }
    return None
