"""One realtime call, client side: provider events and reports in, commands out.

:class:`RealtimeCall` is the client mirror of the server's
:class:`~voxpipe.realtime_server.session.RealtimeSession`. It owns every
decision of a live call on the Realtime protocol: the state machine, the
response guard, the playback ledger's truncations, the user audio relay, the
conversation record, rollover and recovery. Its inputs are typed
``openai.types.realtime`` server events, interruptions, the output's
reports, socket outcomes and timer ticks, each with ``now_ms``; its outputs
are :mod:`~voxpipe.call.commands` the driver (the realtime service) carries
out in order. It never reads a clock, sleeps or touches a socket.

Where a provider event legitimately does not apply in the current state, the
call says so with an :class:`~voxpipe.call.events.EventIgnored` naming the
reason; every other move goes through the state machine, which refuses
(or, strict, raises on) an illegal one.

The session lifecycle (connect, lose, recover, roll over) lives in
:class:`~voxpipe.call.connection.SessionLifecycle`, which this class extends.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RateLimitsUpdatedEvent,
    RealtimeErrorEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseCancelEvent,
    ResponseCreatedEvent,
    ResponseCreateEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseTextDeltaEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from pydantic import BaseModel

from voxpipe.call.commands import (
    BroadcastUserSpeech,
    CloseSession,
    Command,
    CreateResponse,
    EndResponseOutput,
    Forward,
    OpenSession,
    PlayAudio,
    Publish,
    ReportError,
    ResponseAudioEnded,
    SendEvent,
    StopOutput,
)
from voxpipe.call.config import CallConfig
from voxpipe.call.connection import SessionLifecycle
from voxpipe.call.events import (
    IgnoreReason,
    InterruptionHandled,
    ProviderErrorSeen,
    RateLimit,
    RateLimitsUpdated,
    ResponseCancelled,
    ResponseCreated,
    ResponseRequested,
    ServerSpeechStopped,
)
from voxpipe.call.record import HeardAudio
from voxpipe.call.recovery import NetworkFailed, ProviderErrored, classify
from voxpipe.call.response_guard import (
    CancelConfirmed,
    GuardOutput,
    InterruptionSource,
    ResponseQueued,
    ResponseReason,
    ResponseRequest,
    ResponseRequestDropped,
    SendResponseCancel,
    SendResponseCreate,
)
from voxpipe.call.rollover import Role, SessionSeed, Turn
from voxpipe.call.server_events import (
    FORWARD_AS_IS,
    GUARD_CODES,
    RATE_LIMIT_CODE,
    failure_code,
    truncate_commands,
)
from voxpipe.call.state import CallState, CallTrigger
from voxpipe.errors import ConfigError
from voxpipe.playback import PlaybackLedger, TruncationAwaited

DROPPING_KEPT = 256  # cancelled responses remembered (their late output is dropped)
# States in which the bot holds the floor: an interruption there cuts a response.
BOT_ACTIVE = frozenset({CallState.THINKING, CallState.SPEAKING, CallState.CALLING_TOOL})


class RealtimeCall(SessionLifecycle):
    """The decisions of one realtime call (see the module docstring).

    Args:
        config: turn detection, timeouts, rollover, backoff, stall limit, strictness.
        ledger: the call's playback ledger; the output transport reports into it.
        random: floats in [0, 1) for backoff jitter (seeded in tests).
        new_id: fresh ids for the items the call creates (seed turns).
        now_ms: the time the call starts.
    """

    def __init__(
        self,
        config: CallConfig | None = None,
        *,
        ledger: PlaybackLedger | None = None,
        random: Callable[[], float],
        new_id: Callable[[], str],
        now_ms: int = 0,
    ) -> None:
        super().__init__(config or CallConfig(), random=random, new_id=new_id, now_ms=now_ms)
        self.ledger = ledger or PlaybackLedger(self.config.output_format)
        if self.ledger.audio_format is not self.config.output_format:
            raise ConfigError(
                f"the playback ledger counts {self.ledger.audio_format.value} but the session "
                f"sends {self.config.output_format.value}: truncation points would be off",
                hint="build the ledger with the call's output format",
            )
        self.rate_limits: tuple[RateLimit, ...] = ()
        self._response_seq = 0  # counts responses begun: the identity an interruption cuts
        self._cut_seq = -1  # the last response an interruption cut
        # Responses whose output must never be played (the newest DROPPING_KEPT).
        self._dropping: dict[str, None] = {}
        self._audio_item: str | None = None  # the assistant item whose audio came last
        self._audio_response: str | None = None  # the response whose audio came last
        self._preroll = bytearray()  # local turns: the caller's latest audio
        self._playout: tuple[float, int] | None = None  # (position, since) while PLAYING_OUT
        self._awaited_truncations: set[str] = set()  # cut items whose heard position is due
        self._rate_limit_retries = 0
        self.handover_seed: SessionSeed | None = None  # what the other brain starts from
        self.reask_owed = False  # the switch cut an answer (or one never came)
        self._handlers: dict[str, Callable[[Any, int], list[Command]]] = {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "response.created": self._on_response_created,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_text.delta": self._on_text_delta,
            "response.function_call_arguments.done": self._on_function_call,
            "response.done": self._on_response_done,
            "conversation.item.added": self._on_item_added,
            "conversation.item.input_audio_transcription.completed": self._on_transcription,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.committed": self._on_committed,
            "rate_limits.updated": self._on_rate_limits,
            "error": self._on_error,
        }

    # -- queries -------------------------------------------------------------------

    @property
    def handles(self) -> frozenset[str]:
        """The server event types the call acts on (the others are passed on or skipped)."""
        return frozenset(self._handlers)

    def plays(self, response_id: str | None) -> bool:
        """Whether output of ``response_id`` may still reach the caller (the audio gate)."""
        if response_id is None:
            return True
        return response_id not in self._dropping and not self.guard.is_cancelled(response_id)

    # -- server events ------------------------------------------------------------

    def server_event(self, event: BaseModel, now_ms: int) -> list[Command]:
        """Handle one typed server event (``openai.types.realtime``)."""
        self.last_server_event_ms = now_ms
        event_type: str = getattr(event, "type", "")
        handler = self._handlers.get(event_type)
        if handler is not None:
            return handler(event, now_ms)
        if event_type in FORWARD_AS_IS:
            return [Forward(event_type)]
        return []  # UNUSED, or a type newer than this client: nothing to do

    def _on_session_created(self, event: SessionCreatedEvent, now_ms: int) -> list[Command]:
        self.machine.note_session(str(getattr(event.session, "id", "") or ""))
        return [Forward(event.type)]  # pipecat answers with the session.update

    def _on_session_updated(self, event: SessionUpdatedEvent, now_ms: int) -> list[Command]:
        returning = self.returning_by_ms is not None
        if self.machine.state not in (CallState.IDLE, *self.SWITCHING) and not returning:
            return [
                Forward(event.type),
                *self._ignored(event.type, IgnoreReason.SESSION_ALREADY_READY),
            ]
        return [Forward(event.type), *self.session_ready(now_ms)]

    def _drop(self, response_id: str) -> None:
        self._dropping[response_id] = None
        if len(self._dropping) > DROPPING_KEPT:  # long done: no output of theirs can come
            del self._dropping[next(iter(self._dropping))]

    def _on_response_created(self, event: ResponseCreatedEvent, now_ms: int) -> list[Command]:
        response_id = event.response.id or ""
        self.machine.note_response(response_id)
        state = self.machine.state
        if state in (CallState.LISTENING, CallState.PLAYING_OUT):
            # The server's VAD made this one (while the last reply may still be heard).
            self._response_seq += 1
            out = self._move(CallTrigger.RESPONSE_REQUESTED, now_ms)
        elif state is CallState.CANCELLING:
            self._drop(response_id)
            out = self._ignored(event.type, IgnoreReason.CANCELLED_ON_CREATE)
        else:
            out = self._ignored(event.type, IgnoreReason.OWN_REQUEST)
        out.append(Publish(ResponseCreated(response_id)))
        out += self._guard(self.guard.on_response_created(response_id), now_ms)
        return [*out, Forward(event.type)]

    def _on_audio_delta(self, event: ResponseAudioDeltaEvent, now_ms: int) -> list[Command]:
        if not self._live_response(event.response_id):
            return []  # output of a cut or finished response: never played
        pcm = base64.b64decode(event.delta)
        if not self.ledger.audio_received(event.item_id, len(pcm)):
            return []  # the item was truncated
        # A response's items, and their deltas, arrive in playback order.
        new_item = event.item_id != self._audio_item
        new_response = event.response_id != self._audio_response
        self._audio_item, self._audio_response = event.item_id, event.response_id
        out: list[Command] = []
        if self.machine.state is CallState.THINKING:
            out += self._move(CallTrigger.AUDIO_STARTED, now_ms)
        elif new_response and self.machine.state is CallState.CALLING_TOOL:
            out += self._ignored(event.type, IgnoreReason.TOOL_PENDING)
        play = PlayAudio(event.response_id, event.item_id, pcm, new_item, new_response)
        return [*out, play]

    def _on_transcript_delta(
        self, event: ResponseAudioTranscriptDeltaEvent, now_ms: int
    ) -> list[Command]:
        if not self.plays(event.response_id):
            return []
        self.record.assistant_text(
            event.item_id, event.delta, self.ledger.received_ms(event.item_id)
        )
        return [Forward(event.type)]

    def _on_text_delta(self, event: ResponseTextDeltaEvent, now_ms: int) -> list[Command]:
        return [Forward(event.type)] if self.plays(event.response_id) else []

    def _on_function_call(
        self, event: ResponseFunctionCallArgumentsDoneEvent, now_ms: int
    ) -> list[Command]:
        if not self.plays(event.response_id):
            return []  # the cut response's call is never run
        if self.machine.state is CallState.CALLING_TOOL:
            return [
                *self._ignored(event.type, IgnoreReason.ALREADY_CALLING_TOOL),
                Forward(event.type),
            ]
        return [*self._move(CallTrigger.TOOL_CALL_REQUESTED, now_ms), Forward(event.type)]

    def _on_response_done(self, event: ResponseDoneEvent, now_ms: int) -> list[Command]:
        response = event.response
        response_id = response.id or ""
        usage = response.usage
        if usage is not None and usage.input_tokens is not None:
            self.rollover_policy.on_response_done(usage.input_tokens)
        cut = response.status == "cancelled" or response_id in self._dropping
        for item in response.output or []:
            if item.id:
                self.record.assistant_done(item.id, self._heard(item.id, now_ms) if cut else None)
        guard_out = self.guard.on_response_done(response_id)
        confirmed = any(isinstance(o, CancelConfirmed) for o in guard_out)
        out: list[Command] = []
        if response_id == self._audio_response and not cut:
            out.append(ResponseAudioEnded(response_id))  # before pipecat ends the response
        out.append(Forward(event.type))
        if response.status == "cancelled" and not confirmed:
            reason = response.status_details.reason if response.status_details else None
            out.append(Publish(ResponseCancelled(response_id, reason)))
        if not confirmed:
            out += self._finish(response_id, response.status, failure_code(event), now_ms)
        return out + self._guard(guard_out, now_ms)

    def _finish(
        self, response_id: str, status: str | None, failure: str | None, now_ms: int
    ) -> list[Command]:
        state = self.machine.state
        if status == "failed":
            return self._response_failed(failure, now_ms)
        if status == "completed":
            self._rate_limit_retries = 0
        if state in (CallState.THINKING, CallState.CANCELLING):
            return self._move(CallTrigger.RESPONSE_DONE, now_ms)  # nothing (more) to play
        if state is CallState.SPEAKING:
            self._playout = None
            return self._move(CallTrigger.RESPONSE_DONE, now_ms) + self.check_played_out(now_ms)
        if state is CallState.CALLING_TOOL:
            return self._ignored("response.done", IgnoreReason.TOOL_PENDING)
        return self._ignored("response.done", IgnoreReason.STALE_RESPONSE)

    def _response_failed(self, failure: str | None, now_ms: int) -> list[Command]:
        out: list[Command] = []
        if self.machine.can(CallTrigger.RESPONSE_FAILED):
            out += self._move(CallTrigger.RESPONSE_FAILED, now_ms)
            out += self._move(CallTrigger.RECOVERED, now_ms)
        else:
            out += self._ignored("response.done", IgnoreReason.STALE_RESPONSE)
        if failure == RATE_LIMIT_CODE:
            self._schedule_rate_limit_retry(now_ms)
        return out

    def _heard(self, item_id: str, now_ms: int) -> HeardAudio:
        if not self.ledger.has_item(item_id):  # no audio was received: the text is all there is
            return HeardAudio(0.0, 0.0, all_heard=True)
        received = self.ledger.received_ms(item_id)
        return HeardAudio(min(received, self.ledger.played_ms(item_id, now_ms)), received)

    def _on_item_added(self, event: ConversationItemAdded, now_ms: int) -> list[Command]:
        item_id = event.item.id or ""
        self.record.item_added(item_id)
        if self.record.is_seed(item_id):
            return []  # our own seed: not a new turn for pipecat
        return [Forward(event.type)]

    def _on_transcription(
        self, event: ConversationItemInputAudioTranscriptionCompletedEvent, now_ms: int
    ) -> list[Command]:
        self.record.user_transcribed(event.item_id, event.transcript)
        return [Forward(event.type)]

    def _on_speech_started(
        self, event: InputAudioBufferSpeechStartedEvent, now_ms: int
    ) -> list[Command]:
        self.caller_speaking = True
        out: list[Command] = [BroadcastUserSpeech(started=True)]
        if self.machine.state in BOT_ACTIVE or self.machine.state is CallState.PLAYING_OUT:
            # Barge-in: stop the bot now rather than after the aggregator's round trip.
            return out + self.interrupt(InterruptionSource.SERVER_VAD, now_ms)
        return out

    def _on_speech_stopped(
        self, event: InputAudioBufferSpeechStoppedEvent, now_ms: int
    ) -> list[Command]:
        self.caller_speaking = False
        # Before pipecat's ProposedUserStoppedSpeakingFrame: the speech end is known first.
        return [
            Publish(self._speech_stopped(event.audio_end_ms, event.item_id)),
            Forward(event.type),
        ]

    def _speech_stopped(self, audio_end_ms: int, item_id: str | None) -> ServerSpeechStopped:
        """Which caller frame the server's speech end lies in (see :class:`ServerSpeechStopped`)."""
        silence_ms = self.config.turns.silence_ms
        located = None
        if silence_ms is not None:
            located = self.sent_audio.locate(audio_end_ms - silence_ms)
        if located is None or located.frame_id is None:
            return ServerSpeechStopped(audio_end_ms, item_id, silence_ms, None, None, None)
        return ServerSpeechStopped(
            audio_end_ms,
            item_id,
            silence_ms,
            located.frame_id,
            located.offset_ms,
            located.append.sent_at_ms,
        )

    def _on_committed(self, event: InputAudioBufferCommittedEvent, now_ms: int) -> list[Command]:
        self.relay.on_committed()
        self.record.user_committed(event.item_id)
        if self.rollover_policy.on_user_turn() is None:
            return []
        return self.prune()

    def _on_rate_limits(self, event: RateLimitsUpdatedEvent, now_ms: int) -> list[Command]:
        limits = tuple(
            RateLimit(
                str(entry.name or ""),
                int(entry.limit or 0),
                int(entry.remaining or 0),
                float(entry.reset_seconds or 0.0),
            )
            for entry in event.rate_limits or []
        )
        self.rate_limits = limits
        return [Publish(RateLimitsUpdated(limits))]

    def _on_error(self, event: RealtimeErrorEvent, now_ms: int) -> list[Command]:
        error = event.error
        code = error.code or ""
        if code == "item_retrieve_invalid_item_id":
            return [Forward(event.type)]  # an application's retrieve_conversation_item failed
        seen = ProviderErrorSeen(error.code, error.type, error.message, code in GUARD_CODES)
        if code in GUARD_CODES:
            return [Publish(seen), *self._guard(self.guard.on_error(GUARD_CODES[code]), now_ms)]
        signal = ProviderErrored(error.code, error.type, error.message)
        if classify(signal) is not None:
            return [Publish(seen), *self.connection_failed(signal, now_ms)]
        # Anything else (a refused truncate, a bad item) is this request's problem, not the call's.
        return [Publish(seen), ReportError(f"realtime provider error {code}: {error.message}")]

    # -- interruptions ---------------------------------------------------------------

    def interrupt(
        self, source: InterruptionSource, now_ms: int, *, as_frame: bool = False
    ) -> list[Command]:
        """The caller barged in, a processor cut the reply, or the application asked.

        Idempotent by the response's identity: a second report of the same
        barge-in (the server's ``speech_started`` and then the user
        aggregator's interruption frame) cuts nothing more. ``as_frame``: it
        arrived as an interruption frame, which stops the output on its own way.
        """
        out: list[Command] = []
        if source is InterruptionSource.LOCAL_VAD and not self.config.turns.server_vad:
            # Local turns: the input buffer holds audio from before the onset; keep the onset.
            out += self._clear_input_keep_onset()
        state = self.machine.state
        if state is CallState.BRAIN_SWITCHING:
            # The caller spoke while the brains change hands: the new turn makes its own
            # response, so the cut answer is no longer owed; only the output stops.
            self.reask_owed = False
            out += [] if as_frame else [StopOutput()]
            return out + self._move(CallTrigger.INTERRUPTED, now_ms)
        if state is CallState.CANCELLING or self._cut_seq == self._response_seq:
            return out + self._ignored("interruption", IgnoreReason.DUPLICATE_INTERRUPTION)
        if state not in BOT_ACTIVE and state is not CallState.PLAYING_OUT:
            return out + self._ignored("interruption", IgnoreReason.NOTHING_TO_INTERRUPT)
        return out + self._cut(source, now_ms, stop_output=not as_frame)

    def _cut(self, source: InterruptionSource, now_ms: int, *, stop_output: bool) -> list[Command]:
        self._cut_seq = self._response_seq
        response_id = self.guard.active_response_id
        if response_id is not None:
            self._drop(response_id)
        item_id = self.ledger.latest_item()
        truncation = None
        if item_id is not None:
            truncation = self.ledger.plan_truncation(item_id, now_ms)
        if isinstance(truncation, TruncationAwaited):
            self._awaited_truncations.add(truncation.item_id)  # sent once the output says
            truncation = None
        guard_out = self.guard.on_interruption(source)
        cancel = next((o for o in guard_out if isinstance(o, SendResponseCancel)), None)
        out: list[Command] = []
        if stop_output:
            out.append(StopOutput())
        if cancel is not None:
            out.append(
                SendEvent(
                    ResponseCancelEvent(type="response.cancel", response_id=cancel.response_id)
                )
            )
        truncate = truncate_commands(truncation)
        out += truncate[:1]
        out.append(Publish(InterruptionHandled(source, item_id, response_id, cancel is not None)))
        out += truncate[1:]
        out += self._move(CallTrigger.INTERRUPTED, now_ms)
        if self.machine.state is CallState.CANCELLING and not self.guard.response_active:
            # The response had finished already (its audio was still playing): nothing to wait for.
            out += self._move(CallTrigger.CANCEL_CONFIRMED, now_ms)
        out.append(EndResponseOutput())
        return out + self._guard([o for o in guard_out if o is not cancel], now_ms)

    def _settle_truncations(self, now_ms: int) -> list[Command]:
        """Truncate the cut items whose output has now said where playback stopped."""
        out: list[Command] = []
        for item_id in list(self._awaited_truncations):
            truncation = self.ledger.settle_truncation(item_id, now_ms)
            if isinstance(truncation, TruncationAwaited):
                continue
            self._awaited_truncations.discard(item_id)
            if self.session_open:  # a truncate for a session that is gone has no item to cut
                out += truncate_commands(truncation)
        return out

    def _clear_input_keep_onset(self) -> list[Command]:
        self.relay.on_committed()  # the cleared audio is not owed to any later session
        out: list[Command] = [
            SendEvent(InputAudioBufferClearEvent(type="input_audio_buffer.clear"))
        ]
        if self._preroll:
            out += self.relay.on_audio(bytes(self._preroll))
        return out

    # -- the brain switch --------------------------------------------------------------

    def switch_away(self, now_ms: int) -> list[Command]:
        """The failover policy moves the call to the other brain: let go of it cleanly.

        The reply under way is cancelled and remembered as far as the caller
        heard it, the output stops (no stale audio after the switch), the
        session closes, and the call waits in ``BRAIN_SWITCHING`` until
        :meth:`handed_over`. :attr:`handover_seed` is then what the other brain
        starts from (the heard conversation, never the unheard tail) and
        :attr:`reask_owed` says whether the caller's last question still wants
        an answer: it does when a reply was cut, or never came.
        """
        state = self.machine.state
        if self.machine.is_terminal or state in self.HANDED_OVER:
            return self._ignored("brain switch", IgnoreReason.NOT_LIVE)
        out: list[Command] = []
        response_id = self.guard.active_response_id
        cut = response_id is not None or state in BOT_ACTIVE
        if response_id is not None:
            self._drop(response_id)
            if self._session_open:
                cancel = ResponseCancelEvent(type="response.cancel", response_id=response_id)
                out.append(SendEvent(cancel))
        item_id = self._audio_item
        # A reply whose response never ended was lost with its session (a fault, not
        # the caller: a barge-in's cancel ends it): it is cut, and its answer owed.
        lost = item_id is not None and self.record.has_unfinished(item_id)
        if item_id is not None and lost:
            self.record.assistant_done(item_id, self._heard(item_id, now_ms))
        out += [StopOutput(), EndResponseOutput()]
        if self._session_open:
            out += self._drop_session()
        else:  # a reconnect may be on its way: it must not open a session now
            out.append(CloseSession())
            self._seed = self.record.session_ended(self.config.rollover.keep_verbatim_turns)
        self._outage, self._rollover, self.retry_at_ms = None, None, None
        self.handover_seed = self._seed
        self.reask_owed = cut or lost or self.record.last_turn_is_user()
        return out + self._move(CallTrigger.BRAIN_SWITCH_STARTED, now_ms)

    def handover_preview(
        self, now_ms: int, *, at_ms: int | None = None
    ) -> tuple[SessionSeed, bool] | None:
        """What :meth:`switch_away` at ``at_ms`` would hand over (seed, answer owed); no change.

        The brain switch gets ahead on the chained reply with it while a
        hang is suspected. The output plays on until the switch stops it, so
        the reply's heard part is what will have played by ``at_ms`` (default
        now), never past what was received. None when there is no cheap
        preview (see :meth:`ConversationRecord.preview_seed`) or the call is
        not live.
        """
        if self.machine.is_terminal or self.machine.state in self.HANDED_OVER:
            return None
        item_id = self._audio_item
        lost = item_id is not None and self.record.has_unfinished(item_id)
        cut_item = None
        if item_id is not None and lost:
            heard = self._heard(item_id, now_ms)
            ahead = max(0, (at_ms or now_ms) - now_ms)
            played = min(heard.received_ms, heard.played_ms + ahead)
            cut_item = (item_id, dataclasses.replace(heard, played_ms=played))
        seed = self.record.preview_seed(self.config.rollover.keep_verbatim_turns, cut_item)
        if seed is None:
            return None
        cut = self.guard.active_response_id is not None or self.machine.state in BOT_ACTIVE
        last_is_user = bool(seed.verbatim) and seed.verbatim[-1].role is Role.USER
        return seed, cut or lost or last_is_user

    def handed_over(self, now_ms: int) -> list[Command]:
        """The other brain has the call: this one waits, session closed, for a switch back."""
        if self.machine.state is not CallState.BRAIN_SWITCHING:
            return self._ignored("brain switched", IgnoreReason.NOT_LIVE)
        return self._move(CallTrigger.BRAIN_SWITCHED, now_ms)

    def switch_back(self, heard: Sequence[Turn], now_ms: int, *, timeout_ms: int) -> list[Command]:
        """The failover policy brings the call back from the other brain: open a new session.

        ``heard`` is what the caller heard on the other brain since it took
        the call (its turns after those it was seeded with). They join the
        call's record, so the new session is seeded as a reconnect's is: the
        summary in its instructions, the last turns verbatim. Caller audio
        held from before the switch away is dropped (the other brain answered
        it); audio from now on is held and replayed once the session is
        ready. A session that is not ready within ``timeout_ms``, or fails to
        connect, hands the call back (:meth:`return_failed`).
        """
        if self.machine.state is not CallState.ON_FALLBACK:
            return self._ignored("switch back", IgnoreReason.NOT_LIVE)
        for turn in heard:
            if turn.role is not Role.TOOL and turn.text.strip():
                self.record.memory.add(turn)
        self._seed = self.record.session_ended(self.config.rollover.keep_verbatim_turns)
        self.relay.forget()
        self.guard.on_session_reset()
        self.handover_seed, self.reask_owed = None, False
        self.returning_by_ms = now_ms + timeout_ms
        out = self._move(CallTrigger.BRAIN_SWITCH_STARTED, now_ms)
        return [*out, OpenSession(0, refresh_secret=False)]

    # -- what the pipeline reports ----------------------------------------------------

    def response_wanted(
        self,
        reason: ResponseReason,
        request_id: str,
        now_ms: int,
        *,
        instructions: str | None = None,
    ) -> list[Command]:
        """The conversation wants a response (a tool result, the application, a greeting).

        With no session ready (connecting, reconnecting, rolling over) it waits
        for the next one; otherwise the response guard sends it now or after
        the active response.
        """
        if self.machine.is_terminal or self.machine.state in self.HANDED_OVER:
            # The other brain has the call (a guardrail's safe line is its to say).
            return self._ignored("response wanted", IgnoreReason.NOT_LIVE)
        if reason is ResponseReason.FILLER:
            # A filler covers the silence of a tool call's wait: once the call is over
            # (answered, or ended by a barge-in) there is none, nor while a response
            # plays. Never queued, so it is never said late.
            if self.machine.state is not CallState.CALLING_TOOL or self.guard.response_active:
                return self._ignored("filler", IgnoreReason.NO_TOOL_PENDING)
        elif self.machine.state is CallState.CALLING_TOOL:
            reason = ResponseReason.TOOL_RESULT
        request = ResponseRequest(request_id, reason, instructions)
        if self.machine.state is CallState.IDLE or self.machine.state in self.SWITCHING:
            return self._guard(self.guard.hold(request), now_ms)
        return self._guard(self.guard.request_response(request), now_ms)

    def local_turn_ended(self, request_id: str, now_ms: int) -> list[Command]:
        """Local turn detection (server VAD off) says the caller finished: commit, then answer."""
        if self.config.turns.server_vad:
            return self._ignored("local turn end", IgnoreReason.SERVER_TURNS)
        commit = SendEvent(InputAudioBufferCommitEvent(type="input_audio_buffer.commit"))
        return [commit, *self.response_wanted(ResponseReason.USER_TURN, request_id, now_ms)]

    def user_audio(self, pcm: bytes, frame_id: int | None, now_ms: int) -> list[Command]:
        """Caller audio (the session's input format) from the input frame ``frame_id``."""
        if not self.config.turns.server_vad:
            self._preroll += pcm
            del self._preroll[: max(0, len(self._preroll) - self.config.preroll_bytes)]
        sends = self.relay.on_audio(pcm)
        for send in sends:
            self.machine.note_user_audio(send.seq)
            self.sent_audio.on_append(len(send.audio), frame_id=frame_id, now_ms=now_ms)
        return list(sends)

    def output_stopped(self, now_ms: int) -> list[Command]:
        """The output went quiet (pipecat's bot-stopped-speaking): see if the reply was heard."""
        return self.check_played_out(now_ms)

    def check_played_out(self, now_ms: int) -> list[Command]:
        """PLAYING_OUT ends once the caller heard the reply's last audio.

        The ledger says so when the output reported every received millisecond
        as played; an output whose position stops advancing for
        ``playout_stall_ms`` has nothing more to play (it dropped a tail).
        """
        if self.machine.state is not CallState.PLAYING_OUT:
            return []
        item = self.ledger.latest_item()
        if item is None or self.ledger.played_out(item, now_ms):
            return self._move(CallTrigger.PLAYED_OUT, now_ms)
        played = self.ledger.played_ms(item, now_ms)
        if self._playout is None or played > self._playout[0]:
            self._playout = (played, now_ms)
        elif now_ms - self._playout[1] >= self.config.playout_stall_ms:
            return self._move(CallTrigger.PLAYED_OUT, now_ms)
        return []

    def tool_answered(self, name: str, result: str) -> None:
        """A tool's result went back to the model: the next session's seed carries it."""
        self.record.tool_answered(name, result)

    # -- timers ------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Command]:
        """Timer tick: state deadlines, stalls, rollover, rate-limit retries, playout, truncates."""
        if self.returning_by_ms is not None and now_ms >= self.returning_by_ms:
            return self.return_failed("no session ready in time", now_ms)
        out = self.tick_session(now_ms) + self._settle_truncations(now_ms)
        if self.retry_at_ms is not None and now_ms >= self.retry_at_ms:
            self.retry_at_ms = None
            if self.machine.state is CallState.LISTENING and not self.guard.response_active:
                out += self.response_wanted(ResponseReason.APPLICATION, f"retry-{now_ms}", now_ms)
        return out + self.check_played_out(now_ms)

    def _schedule_rate_limit_retry(self, now_ms: int) -> None:
        """Ask again once the exhausted limit resets, a bounded number of times."""
        config = self.config
        if self._rate_limit_retries >= config.max_rate_limit_retries:
            return
        self._rate_limit_retries += 1
        waits = [int(r.reset_seconds * 1000) for r in self.rate_limits if r.remaining <= 0]
        backoff_ms = 1000 * 2 ** (self._rate_limit_retries - 1)
        # Back off from a second, never past the provider's own reset time.
        delay = min(config.max_rate_limit_wait_ms, backoff_ms, max(waits, default=backoff_ms))
        self.retry_at_ms = now_ms + delay

    # -- the response guard ----------------------------------------------------------

    def _guard(self, outputs: list[GuardOutput], now_ms: int) -> list[Command]:
        """Turn what the response guard decided into commands."""
        out: list[Command] = []
        for output in outputs:
            if isinstance(output, SendResponseCreate):
                out += self._begin_response(output.request, now_ms)
            elif isinstance(output, SendResponseCancel):
                cancel = ResponseCancelEvent(type="response.cancel", response_id=output.response_id)
                out.append(SendEvent(cancel))
            elif isinstance(output, CancelConfirmed):
                out.append(Publish(ResponseCancelled(output.response_id, "cancel_confirmed")))
                if self.machine.state is CallState.CANCELLING:
                    out += self._move(CallTrigger.CANCEL_CONFIRMED, now_ms)
            elif isinstance(output, ResponseQueued):
                out.append(Publish(ResponseRequested(output.request.reason, queued=True)))
            elif isinstance(output, ResponseRequestDropped):
                pass  # the caller's new turn makes its own response
        return out

    @property
    def holds_conversation(self) -> bool:
        """The call has a conversation: a caller turn was committed or a response begun.

        From then on the session holds what was said (a new session is seeded from
        the record), so the application's context is never sent into it again.
        """
        return self._response_seq > 0 or self.record.user_turns_committed > 0

    def _begin_response(self, request: ResponseRequest, now_ms: int) -> list[Command]:
        fresh = not self.holds_conversation
        self._response_seq += 1
        calling_tool = self.machine.state is CallState.CALLING_TOOL
        out: list[Command] = [Publish(ResponseRequested(request.reason, queued=False))]
        if request.reason is ResponseReason.FILLER and not calling_tool:
            # Queued behind a response (one the server made as the caller stopped) and
            # the tool call ended meanwhile: a filler now would be said after the answer.
            withdrawn = self._guard(self.guard.withdraw(), now_ms)
            return [*self._ignored("filler", IgnoreReason.NO_TOOL_PENDING), *withdrawn]
        if request.reason is not ResponseReason.FILLER:
            trigger = (
                CallTrigger.TOOL_RESULT_SENT if calling_tool else CallTrigger.RESPONSE_REQUESTED
            )
            out += self._move(trigger, now_ms)
        # A filler is said while the tool still runs: the call stays CALLING_TOOL (its
        # audio plays there, as a line said before a call does) until the result is sent.
        if request.instructions is None:
            # An ordinary reply to the conversation.
            return [*out, CreateResponse(request, set_up_conversation=fresh)]
        # A line to say as given: audio out, response-level instructions.
        create = ResponseCreateEvent.model_validate(
            {
                "type": "response.create",
                "response": {"output_modalities": ["audio"], "instructions": request.instructions},
            }
        )
        return [*out, SendEvent(create)]

    def _live_response(self, response_id: str) -> bool:
        # Only the active response plays: a late delta of one that was cleared never does.
        return self.plays(response_id) and response_id == self.guard.active_response_id

    def _flush_requests(self, now_ms: int) -> list[Command]:
        return self._guard(self.guard.flush(), now_ms)


__all__ = ["BOT_ACTIVE", "NetworkFailed", "RealtimeCall"]
