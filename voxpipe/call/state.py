"""The call state machine: one transition table, time as an argument.

Everything that moves a call between states lives in this file. The driver
feeds triggers (``handle(trigger, now_ms)``) and timer ticks
(``tick(now_ms)``); each accepted move yields a :class:`StateChanged` the
driver publishes, each refused move a :class:`TransitionRejected` (or an
:class:`~voxpipe.errors.IllegalTransitionError` in strict mode).

Happy path: IDLE -> LISTENING -> THINKING -> SPEAKING -> PLAYING_OUT -> LISTENING
(``response.done`` moves SPEAKING to PLAYING_OUT; the call is LISTENING again
once the caller heard the reply's last audio).
Barge-in: SPEAKING (or THINKING) --INTERRUPTED--> CANCELLING --CANCEL_CONFIRMED--> LISTENING;
PLAYING_OUT --INTERRUPTED--> LISTENING (the reply was over; only its audio stops).
A stuck or failed response: THINKING --TIMED_OUT/RESPONSE_FAILED--> RECOVERING -> LISTENING.
Socket or session lost: any live state -> RECONNECTING -> LISTENING.
Session cap ahead: LISTENING --ROLLOVER_STARTED--> ROLLING_OVER -> LISTENING.
Brain switch (a fallback is configured): any live state --BRAIN_SWITCH_STARTED-->
BRAIN_SWITCHING --BRAIN_SWITCHED--> ON_FALLBACK (the chained brain has the call);
back: ON_FALLBACK --BRAIN_SWITCH_STARTED--> BRAIN_SWITCHING --SESSION_READY--> LISTENING.
A barge-in while switching (BRAIN_SWITCHING --INTERRUPTED--> BRAIN_SWITCHING) stops
the output and cancels nothing: no response of this brain is left to cut.
Agent handoff (``[agents]``): THINKING/SPEAKING --HANDOFF_STARTED--> HANDING_OFF (the
transfer tool was called; the new agent's ``session.update`` is out)
--HANDOFF_APPLIED--> LISTENING (``session.updated``: the tool output and the new
agent's response may go). A barge-in while handing off (HANDING_OFF --INTERRUPTED-->
HANDING_OFF) stops the output and cuts the transfer line; the handoff still completes.
ENDED (hang-up) and FAILED (fatal provider error, retries exhausted) are terminal.
"""

from __future__ import annotations

import dataclasses
import enum
import logging

from voxpipe.errors import IllegalTransitionError

_log = logging.getLogger(__name__)


class CallState(enum.Enum):
    """Where a call is."""

    IDLE = "idle"  # created, no session yet
    LISTENING = "listening"  # session up, waiting for (or hearing) the user
    THINKING = "thinking"  # a response was requested, no audio out yet
    SPEAKING = "speaking"  # response audio is flowing to the caller
    PLAYING_OUT = "playing_out"  # response.done; its last audio is still being heard
    CALLING_TOOL = "calling_tool"  # the model asked for a tool; we are running it
    CANCELLING = "cancelling"  # interrupted; waiting for the response to end
    RECOVERING = "recovering"  # a response timed out or failed; clearing it
    RECONNECTING = "reconnecting"  # socket or session lost; opening a new one
    ROLLING_OVER = "rolling_over"  # moving the conversation to a fresh session
    BRAIN_SWITCHING = "brain_switching"  # handing the call to the other brain (or taking it back)
    HANDING_OFF = "handing_off"  # another agent takes the call: its session.update is out
    ON_FALLBACK = "on_fallback"  # the chained brain has the call; no realtime session
    ENDED = "ended"  # hung up normally
    FAILED = "failed"  # cannot go on (fatal provider error, retry budget spent)


class CallTrigger(enum.Enum):
    """What happened to make the call move."""

    SESSION_READY = "session_ready"  # session.created/updated on a (new) socket
    RESPONSE_REQUESTED = "response_requested"  # turn committed, response.create sent
    AUDIO_STARTED = "audio_started"  # first audio delta of the response played
    TOOL_CALL_REQUESTED = "tool_call_requested"  # function call arguments done
    TOOL_RESULT_SENT = "tool_result_sent"  # output item sent, follow-up response asked
    RESPONSE_DONE = "response_done"  # response.done (completed or incomplete)
    PLAYED_OUT = "played_out"  # the caller heard the finished reply's last audio
    INTERRUPTED = "interrupted"  # barge-in, guardrail, application
    CANCEL_CONFIRMED = "cancel_confirmed"  # response.done cancelled / cancel_not_active
    TIMED_OUT = "timed_out"  # no progress within the state's deadline
    RESPONSE_FAILED = "response_failed"  # response.done failed, or an error event
    RECOVERED = "recovered"  # the failed response is cleared
    CONNECTION_LOST = "connection_lost"  # socket closed, network error, session error
    ROLLOVER_STARTED = "rollover_started"  # rollover policy said roll now
    HUNG_UP = "hung_up"  # caller or application ended the call
    FATAL_ERROR = "fatal_error"  # provider refuses service, or retries exhausted
    BRAIN_SWITCH_STARTED = "brain_switch_started"  # the failover policy said switch
    BRAIN_SWITCHED = "brain_switched"  # the chained brain has the call now
    HANDOFF_STARTED = "handoff_started"  # a transfer tool was called: the next agent is set up
    HANDOFF_APPLIED = "handoff_applied"  # session.updated: the next agent has the call


_S = CallState
_T = CallTrigger

_LIVE = (
    _S.LISTENING,
    _S.THINKING,
    _S.SPEAKING,
    _S.PLAYING_OUT,
    _S.CALLING_TOOL,
    _S.CANCELLING,
    _S.RECOVERING,
    _S.ROLLING_OVER,
    _S.HANDING_OFF,
)
_NOT_TERMINAL = (_S.IDLE, *_LIVE, _S.RECONNECTING, _S.BRAIN_SWITCHING, _S.ON_FALLBACK)


def _build_table() -> dict[tuple[CallState, CallTrigger], CallState]:
    table: dict[tuple[CallState, CallTrigger], CallState] = {
        (_S.IDLE, _T.SESSION_READY): _S.LISTENING,
        (_S.IDLE, _T.CONNECTION_LOST): _S.RECONNECTING,  # the first connect failed
        (_S.LISTENING, _T.RESPONSE_REQUESTED): _S.THINKING,
        (_S.THINKING, _T.AUDIO_STARTED): _S.SPEAKING,
        (_S.THINKING, _T.RESPONSE_DONE): _S.LISTENING,  # text-only or empty response
        (_S.THINKING, _T.TOOL_CALL_REQUESTED): _S.CALLING_TOOL,
        (_S.SPEAKING, _T.TOOL_CALL_REQUESTED): _S.CALLING_TOOL,  # "let me check" then a call
        (_S.SPEAKING, _T.RESPONSE_DONE): _S.PLAYING_OUT,
        (_S.PLAYING_OUT, _T.PLAYED_OUT): _S.LISTENING,
        # The next response began while the last one's audio still plays.
        (_S.PLAYING_OUT, _T.RESPONSE_REQUESTED): _S.THINKING,
        (_S.PLAYING_OUT, _T.INTERRUPTED): _S.LISTENING,  # nothing to cancel: only audio stops
        (_S.CALLING_TOOL, _T.TOOL_RESULT_SENT): _S.THINKING,
        (_S.THINKING, _T.INTERRUPTED): _S.CANCELLING,  # user talks before the first audio
        (_S.SPEAKING, _T.INTERRUPTED): _S.CANCELLING,
        (_S.CALLING_TOOL, _T.INTERRUPTED): _S.CANCELLING,
        (_S.CANCELLING, _T.CANCEL_CONFIRMED): _S.LISTENING,
        # The response may complete on its own before the cancel lands.
        (_S.CANCELLING, _T.RESPONSE_DONE): _S.LISTENING,
        (_S.CANCELLING, _T.TIMED_OUT): _S.RECOVERING,
        (_S.THINKING, _T.TIMED_OUT): _S.RECOVERING,
        (_S.THINKING, _T.RESPONSE_FAILED): _S.RECOVERING,
        (_S.SPEAKING, _T.RESPONSE_FAILED): _S.RECOVERING,
        (_S.CALLING_TOOL, _T.TIMED_OUT): _S.RECOVERING,
        (_S.CALLING_TOOL, _T.RESPONSE_FAILED): _S.RECOVERING,
        (_S.RECOVERING, _T.RECOVERED): _S.LISTENING,
        (_S.LISTENING, _T.ROLLOVER_STARTED): _S.ROLLING_OVER,
        (_S.ROLLING_OVER, _T.SESSION_READY): _S.LISTENING,
        (_S.RECONNECTING, _T.SESSION_READY): _S.LISTENING,
        # A reconnect attempt that fails keeps the call reconnecting.
        (_S.RECONNECTING, _T.CONNECTION_LOST): _S.RECONNECTING,
        (_S.ROLLING_OVER, _T.TIMED_OUT): _S.RECONNECTING,
    }
    for state in _LIVE:
        table[(state, _T.CONNECTION_LOST)] = _S.RECONNECTING
    for state in (_S.THINKING, _S.SPEAKING):
        table[(state, _T.HANDOFF_STARTED)] = _S.HANDING_OFF
    table[(_S.HANDING_OFF, _T.HANDOFF_APPLIED)] = _S.LISTENING
    table[(_S.HANDING_OFF, _T.INTERRUPTED)] = _S.HANDING_OFF  # the transfer line is cut
    table[(_S.HANDING_OFF, _T.TIMED_OUT)] = _S.RECOVERING  # session.updated never came
    for state in (_S.IDLE, *_LIVE, _S.RECONNECTING, _S.ON_FALLBACK):
        table[(state, _T.BRAIN_SWITCH_STARTED)] = _S.BRAIN_SWITCHING
    table[(_S.BRAIN_SWITCHING, _T.INTERRUPTED)] = _S.BRAIN_SWITCHING  # nothing left to cancel
    table[(_S.BRAIN_SWITCHING, _T.BRAIN_SWITCHED)] = _S.ON_FALLBACK
    table[(_S.BRAIN_SWITCHING, _T.SESSION_READY)] = _S.LISTENING  # back on realtime
    # Switching back failed (the session the probe promised did not come): stay on the fallback.
    table[(_S.BRAIN_SWITCHING, _T.CONNECTION_LOST)] = _S.ON_FALLBACK
    for state in _NOT_TERMINAL:
        table[(state, _T.HUNG_UP)] = _S.ENDED
        table[(state, _T.FATAL_ERROR)] = _S.FAILED
    return table


TRANSITIONS: dict[tuple[CallState, CallTrigger], CallState] = _build_table()
"""(state, trigger) -> next state. A pair not in the table is illegal."""

TERMINAL_STATES = frozenset({_S.ENDED, _S.FAILED})
_NO_RESPONSE = frozenset(
    {_S.LISTENING, _S.RECONNECTING, _S.ROLLING_OVER, _S.BRAIN_SWITCHING, _S.ON_FALLBACK}
)


@dataclasses.dataclass(frozen=True)
class StateTimeouts:
    """How long a state may last before ``tick`` fires ``TIMED_OUT`` (None: no limit)."""

    thinking_ms: int | None = 15_000
    cancelling_ms: int | None = 3_000
    calling_tool_ms: int | None = 30_000
    rolling_over_ms: int | None = 10_000
    handing_off_ms: int | None = 10_000

    def for_state(self, state: CallState) -> int | None:
        """The limit for ``state``, if it has one."""
        return {
            _S.THINKING: self.thinking_ms,
            _S.CANCELLING: self.cancelling_ms,
            _S.CALLING_TOOL: self.calling_tool_ms,
            _S.ROLLING_OVER: self.rolling_over_ms,
            _S.HANDING_OFF: self.handing_off_ms,
        }.get(state)


@dataclasses.dataclass(frozen=True)
class CallContext:
    """What a call remembers across sessions, reconnects and rollovers."""

    session_id: str | None = None
    conversation_id: str | None = None
    response_id: str | None = None
    last_user_audio_seq: int = -1


@dataclasses.dataclass(frozen=True)
class StateChanged:
    """The call moved from ``previous`` to ``current`` because of ``trigger``."""

    previous: CallState
    current: CallState
    trigger: CallTrigger
    at_ms: int
    session_id: str | None
    response_id: str | None


@dataclasses.dataclass(frozen=True)
class TransitionRejected:
    """``trigger`` is not allowed in ``state``; the call stayed where it was."""

    state: CallState
    trigger: CallTrigger
    at_ms: int


TransitionResult = StateChanged | TransitionRejected


class CallStateMachine:
    """The state of one call, driven by triggers and ticks.

    ``strict=True`` (tests, development) raises :class:`IllegalTransitionError`
    on an illegal move; ``strict=False`` (production) logs it and returns a
    :class:`TransitionRejected`, so a late or duplicate provider event never
    kills a live call.
    """

    def __init__(
        self,
        *,
        strict: bool = True,
        timeouts: StateTimeouts | None = None,
        now_ms: int = 0,
    ) -> None:
        self._strict = strict
        self._timeouts = timeouts or StateTimeouts()
        self._state = CallState.IDLE
        self._entered_at_ms = now_ms
        self._context = CallContext()
        self._outbox: list[TransitionResult] = []

    @property
    def state(self) -> CallState:
        """The current state."""
        return self._state

    @property
    def context(self) -> CallContext:
        """Session, response and caller-audio bookkeeping."""
        return self._context

    @property
    def is_terminal(self) -> bool:
        """True once the call ended or failed."""
        return self._state in TERMINAL_STATES

    def can(self, trigger: CallTrigger) -> bool:
        """Whether ``trigger`` is legal in the current state."""
        return (self._state, trigger) in TRANSITIONS

    def handle(self, trigger: CallTrigger, now_ms: int) -> TransitionResult:
        """Apply ``trigger`` at ``now_ms`` and return what happened."""
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            return self._reject(trigger, now_ms)
        previous, self._state = self._state, target
        self._entered_at_ms = now_ms
        if target in _NO_RESPONSE or target in TERMINAL_STATES:
            # No response survives these states; a stale id would mislead the guard.
            self._context = dataclasses.replace(self._context, response_id=None)
        event = StateChanged(
            previous, target, trigger, now_ms, self._context.session_id, self._context.response_id
        )
        self._outbox.append(event)
        return event

    def next_deadline_ms(self) -> int | None:
        """When the current state times out, for the driver's timer (None: never)."""
        limit = self._timeouts.for_state(self._state)
        return None if limit is None else self._entered_at_ms + limit

    def tick(self, now_ms: int) -> StateChanged | None:
        """Fire ``TIMED_OUT`` if the current state overstayed its deadline."""
        deadline = self.next_deadline_ms()
        if deadline is None or now_ms < deadline:
            return None
        result = self.handle(CallTrigger.TIMED_OUT, now_ms)
        return result if isinstance(result, StateChanged) else None

    def drain_events(self) -> list[TransitionResult]:
        """Every result since the last drain, oldest first, for the driver to publish."""
        events, self._outbox = self._outbox, []
        return events

    def note_session(self, session_id: str, conversation_id: str | None = None) -> None:
        """A (new) session is up: remember its ids."""
        self._context = dataclasses.replace(
            self._context, session_id=session_id, conversation_id=conversation_id
        )

    def note_response(self, response_id: str | None) -> None:
        """The provider created (or we cleared) the active response."""
        self._context = dataclasses.replace(self._context, response_id=response_id)

    def note_user_audio(self, seq: int) -> None:
        """User audio chunk ``seq`` was sent; sequences only move forward."""
        if seq > self._context.last_user_audio_seq:
            self._context = dataclasses.replace(self._context, last_user_audio_seq=seq)

    def _reject(self, trigger: CallTrigger, now_ms: int) -> TransitionRejected:
        message = f"{trigger.name} is not allowed in {self._state.name}"
        if self._strict:
            raise IllegalTransitionError(message, hint="see voxpipe.call.state.TRANSITIONS")
        _log.warning("call state: %s (ignored)", message)
        rejected = TransitionRejected(self._state, trigger, now_ms)
        self._outbox.append(rejected)
        return rejected
