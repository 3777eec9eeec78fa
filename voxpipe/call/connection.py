"""A realtime call's sessions: open one, lose one, recover, roll over, seed the next.

:class:`SessionLifecycle` is the half of :class:`~voxpipe.call.realtime_call.RealtimeCall`
that decides about provider sessions (one socket each):

- the first connect, and ``session.updated`` on every new socket: seed it from
  the call's record (summary in the instructions, the last turns verbatim),
  replay the caller's audio held during the switch, send what was queued;
- a failure (socket closed, network error, classified ``error`` event, a
  stall, a rollover that never finished): the
  :class:`~voxpipe.call.recovery.RecoveryPolicy` says reconnect after a
  jittered delay (with a fresh secret for SESSION failures) or give up;
- rollover before the provider's cap, between turns, and pruning of old items.

Sans-I/O like the rest of :mod:`voxpipe.call`: time comes in as ``now_ms``,
commands go out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemUserMessage,
    ResponseCancelEvent,
)

from voxpipe.audio import bytes_per_ms, bytes_to_ms
from voxpipe.call.commands import (
    CloseSession,
    Command,
    EndCall,
    OpenSession,
    Publish,
    SendEvent,
    UpdateSession,
)
from voxpipe.call.config import CallConfig
from voxpipe.call.events import (
    BrainGaveUp,
    CallFailed,
    EventIgnored,
    IgnoreReason,
    Reconnected,
    Reconnecting,
    RolledOver,
    TokenRotated,
)
from voxpipe.call.record import ConversationRecord
from voxpipe.call.recovery import (
    FailureClass,
    FailureSignal,
    GiveUp,
    NetworkFailed,
    RecoveryPolicy,
    describe,
)
from voxpipe.call.response_guard import ResponseGuard
from voxpipe.call.rollover import Role, RolloverDue, RolloverPolicy, SessionSeed
from voxpipe.call.session_audio import SessionAudioLog
from voxpipe.call.state import CallState, CallStateMachine, CallTrigger
from voxpipe.call.tokens import RotationFailed, SecretRotated
from voxpipe.call.user_audio import UserAudioRelay
from voxpipe.errors import TransportError, VoxpipeError


@dataclasses.dataclass
class _Outage:
    """A connection failure being recovered from."""

    started_ms: int
    failure_class: FailureClass
    attempts: int = 0


class SessionLifecycle:
    """Provider sessions of one call (see the module docstring)."""

    SWITCHING = (CallState.RECONNECTING, CallState.ROLLING_OVER)
    HANDED_OVER = (CallState.BRAIN_SWITCHING, CallState.ON_FALLBACK)

    def __init__(
        self,
        config: CallConfig,
        *,
        random: Callable[[], float],
        new_id: Callable[[], str],
        now_ms: int,
    ) -> None:
        self.config = config
        self.machine = CallStateMachine(
            strict=config.strict, timeouts=config.timeouts, now_ms=now_ms
        )
        self.guard = ResponseGuard(server_auto_cancels=False)
        self.relay = UserAudioRelay(config.input_format)
        # This session's input audio line, by frame.
        self.sent_audio = SessionAudioLog(bytes_per_ms=bytes_per_ms(config.input_format))
        self.rollover_policy = RolloverPolicy(config.rollover)
        self.recovery = RecoveryPolicy(random, config.backoff)
        self.record = ConversationRecord()
        self.last_server_event_ms = now_ms
        self.retry_at_ms: int | None = None  # a response to ask again for (rate limits)
        self.rotations = 0
        self.caller_speaking = False  # the server's VAD hears the caller now
        self._new_id = new_id
        self._seed: SessionSeed | None = None
        self._session_open = False
        self._outage: _Outage | None = None
        self._rollover: tuple[RolloverDue, int] | None = None
        # Switching back from the fallback: the new session must be ready by then.
        self.returning_by_ms: int | None = None
        self.seeded_on_return = 0  # turns the last switch back seeded the session with

    # -- the socket ------------------------------------------------------------------

    @property
    def session_open(self) -> bool:
        """Whether a socket is up (its session may not be ready yet)."""
        return self._session_open

    def start(self, now_ms: int) -> list[Command]:
        """The call begins: open the first session."""
        if self._session_open or self.machine.state is not CallState.IDLE:
            return self._ignored("start", IgnoreReason.SESSION_ALREADY_READY)
        return [OpenSession(0, refresh_secret=False)]

    def session_opened(self, now_ms: int) -> list[Command]:
        """A socket is up; its session becomes ready with ``session.updated``."""
        self._session_open = True
        self.last_server_event_ms = now_ms
        self.sent_audio.new_session()  # a new session's audio positions start at 0
        if self._outage is not None:
            self.recovery.on_connected()
        return []

    def connection_failed(self, signal: FailureSignal, now_ms: int) -> list[Command]:
        """The socket closed or broke, a connect failed, or the provider refused the session."""
        if self.returning_by_ms is not None:
            return self.return_failed(describe(signal), now_ms)
        if self.machine.is_terminal or self.machine.state in self.HANDED_OVER:
            return self._ignored(describe(signal), IgnoreReason.NOT_LIVE)
        out = self._drop_session()
        if self._outage is None:
            self._outage = _Outage(now_ms, FailureClass.TRANSPORT)
        out += self._move(CallTrigger.CONNECTION_LOST, now_ms)
        action = self.recovery.on_failure(signal, now_ms)
        if action is None:  # not a connection failure after all: try again at once
            action = self.recovery.on_failure(NetworkFailed(describe(signal)), now_ms)
            assert action is not None
        if isinstance(action, GiveUp):
            return out + self.fail(action.error, action.failure_class, now_ms)
        self._outage.failure_class = action.failure_class
        self._outage.attempts += 1
        reconnecting = Reconnecting(
            action.failure_class,
            action.attempt,
            action.delay_ms,
            describe(signal),
            action.refresh_secret,
        )
        return [*out, Publish(reconnecting), OpenSession(action.delay_ms, action.refresh_secret)]

    def fail(self, error: VoxpipeError, failure_class: FailureClass, now_ms: int) -> list[Command]:
        """Give up: no more retries; the application is told and the pipeline stops.

        With a fallback brain the call goes on: the brain switch hears of a
        :class:`~voxpipe.call.events.BrainGaveUp` and moves the call.
        """
        if self.machine.is_terminal or self.machine.state in self.HANDED_OVER:
            return []
        out = self._drop_session() if self._session_open else []
        if self.config.fallback:
            self._outage = None
            return [*out, Publish(BrainGaveUp(error, failure_class))]
        out += self._move(CallTrigger.FATAL_ERROR, now_ms)
        return [*out, Publish(CallFailed(error, failure_class)), EndCall(error)]

    def return_failed(self, detail: str, now_ms: int) -> list[Command]:
        """Switching back did not work: the other brain keeps the call (BrainGaveUp says so)."""
        if self.returning_by_ms is None:
            return self._ignored("switch back failed", IgnoreReason.NOT_LIVE)
        self.returning_by_ms = None
        out = self._drop_session() if self._session_open else [CloseSession()]
        self._seed = None  # the record keeps every turn; the next return seeds afresh
        out += self._move(CallTrigger.CONNECTION_LOST, now_ms)
        error = TransportError(f"switching back to the realtime brain failed: {detail}")
        return [*out, Publish(BrainGaveUp(error, FailureClass.TRANSPORT))]

    def hang_up(self, now_ms: int) -> list[Command]:
        """The call ends normally."""
        if self.machine.is_terminal:
            return []
        return self._move(CallTrigger.HUNG_UP, now_ms)

    def _drop_session(self) -> list[Command]:
        """Forget the session: hold the caller's audio, free the response slot, seed the next."""
        self._session_open = False
        self.relay.on_disconnected()
        self.guard.on_session_reset()
        self._seed = self.record.session_ended(self.config.rollover.keep_verbatim_turns)
        return [CloseSession()]

    # -- a new session ----------------------------------------------------------------

    def session_ready(self, now_ms: int) -> list[Command]:
        """``session.updated`` on a new socket: seed it and resume the call on it."""
        state = self.machine.state
        out = self._seed_items() if state is not CallState.IDLE else []
        seeded = len(out)
        out += self._move(CallTrigger.SESSION_READY, now_ms)
        if self.returning_by_ms is not None:  # back from the fallback, seeded with what was heard
            self.returning_by_ms = None
            self.recovery.reset()
            self.seeded_on_return = seeded
        self.rollover_policy.on_session_started(now_ms)
        replay = self.relay.on_connected()
        for chunk in replay:
            self.sent_audio.on_append(len(chunk.audio), frame_id=None, now_ms=now_ms)
        out += replay
        replayed_ms = bytes_to_ms(sum(len(c.audio) for c in replay), self.config.input_format)
        if state is CallState.RECONNECTING and self._outage is not None:
            outage, self._outage = self._outage, None
            downtime = now_ms - outage.started_ms
            out.append(
                Publish(
                    Reconnected(
                        outage.failure_class, outage.attempts, downtime, replayed_ms, seeded
                    )
                )
            )
        elif state is CallState.ROLLING_OVER and self._rollover is not None:
            (due, started), self._rollover = self._rollover, None
            rolled = RolledOver(
                due.reason,
                due.session_age_ms,
                due.input_tokens,
                now_ms - started,
                replayed_ms,
                seeded,
            )
            out.append(Publish(rolled))
        return out + self._flush_requests(now_ms)

    def _seed_items(self) -> list[Command]:
        """The seed's verbatim turns, as conversation items of the new session."""
        if self._seed is None:
            return []
        out: list[Command] = []
        for turn in self._seed.verbatim:
            if turn.role is Role.TOOL or not turn.text.strip():
                continue
            item_id = self._new_id()
            self.record.seeded(item_id)
            item: RealtimeConversationItemUserMessage | RealtimeConversationItemAssistantMessage
            if turn.role is Role.USER:
                item = RealtimeConversationItemUserMessage.model_validate(
                    {
                        "id": item_id,
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": turn.text}],
                    }
                )
            else:
                item = RealtimeConversationItemAssistantMessage.model_validate(
                    {
                        "id": item_id,
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": turn.text}],
                    }
                )
            out.append(
                SendEvent(ConversationItemCreateEvent(type="conversation.item.create", item=item))
            )
        return out

    def session_instructions(self, base: str) -> str:
        """The instructions a ``session.update`` carries: the base plus the seed's summary."""
        return base if self._seed is None else self._seed.instructions(base)

    def prune(self) -> list[Command]:
        """Fold older turns into the summary and delete their items from the live session."""
        doomed, seed = self.record.prune(self.config.rollover.keep_verbatim_turns)
        out: list[Command] = [
            SendEvent(ConversationItemDeleteEvent(type="conversation.item.delete", item_id=item_id))
            for item_id in doomed
        ]
        if seed is not None:
            self._seed = seed
            out.append(UpdateSession())  # the instructions now carry the summary
        return out

    # -- timers ------------------------------------------------------------------

    def tick_session(self, now_ms: int) -> list[Command]:
        """State deadlines, a stalled stream, and rollover when it is due."""
        moved = self.machine.tick(now_ms)
        out = self._published_transitions()
        if moved is not None and moved.current is CallState.RECOVERING:
            out += self._clear_stuck_response(now_ms)
        elif moved is not None and moved.current is CallState.RECONNECTING:
            out += self._connection_lost_in_switch(now_ms)
        silent_ms = now_ms - self.last_server_event_ms
        if (
            self._session_open
            and self.guard.response_active
            and silent_ms > self.config.stall_timeout_ms
        ):
            reason = f"no server event for {self.config.stall_timeout_ms} ms"
            return out + self.connection_failed(NetworkFailed(reason), now_ms)
        return out + self._maybe_roll_over(now_ms)

    def _clear_stuck_response(self, now_ms: int) -> list[Command]:
        out: list[Command] = []
        active = self.guard.active_response_id
        if self.guard.response_active:
            cancel = ResponseCancelEvent(type="response.cancel", response_id=active)
            out.append(SendEvent(cancel))
        self.guard.on_session_reset()
        out += self._move(CallTrigger.RECOVERED, now_ms)
        return out + self._flush_requests(now_ms)

    def _connection_lost_in_switch(self, now_ms: int) -> list[Command]:
        # The rollover's new session never became ready: recover as from a lost socket.
        self._rollover = None
        return self.connection_failed(NetworkFailed("rollover timed out"), now_ms)

    def _maybe_roll_over(self, now_ms: int) -> list[Command]:
        if not self._session_open:
            return []
        idle = self.machine.state is CallState.LISTENING and not self.caller_speaking
        due = self.rollover_policy.check(now_ms, idle=idle)
        if due is None or not self.machine.can(CallTrigger.ROLLOVER_STARTED):
            return []
        self._rollover = (due, now_ms)
        out = self._move(CallTrigger.ROLLOVER_STARTED, now_ms)
        return [*out, *self._drop_session(), OpenSession(0, refresh_secret=False)]

    # -- tokens ------------------------------------------------------------------

    def token_event(self, event: SecretRotated | RotationFailed) -> list[Command]:
        """The token provider minted a secret, or failed to (it retries on its own)."""
        if isinstance(event, RotationFailed):
            return [Publish(TokenRotated(self.rotations, event.failures, True, event.reason))]
        self.rotations = event.rotations
        return [Publish(TokenRotated(event.rotations, 0, False))]

    # -- helpers shared with the call ------------------------------------------------

    def _flush_requests(self, now_ms: int) -> list[Command]:
        raise NotImplementedError  # RealtimeCall turns the guard's queue into commands

    def _move(self, trigger: CallTrigger, now_ms: int) -> list[Command]:
        """Move the state machine; publish what it did (a refusal, unless strict)."""
        self.machine.handle(trigger, now_ms)
        return self._published_transitions()

    def _published_transitions(self) -> list[Command]:
        return [Publish(result) for result in self.machine.drain_events()]

    def _ignored(self, what: str, reason: IgnoreReason) -> list[Command]:
        return [Publish(EventIgnored(what, self.machine.state, reason))]
