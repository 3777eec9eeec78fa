"""voxpipe's realtime speech-to-speech service: pipecat's, made fit for a live call.

:class:`RealtimeService` subclasses pipecat's ``OpenAIRealtimeLLMService`` and
drives the sans-I/O cores of :mod:`voxpipe.call`:

- any interruption stops the audio at once, sends ``response.cancel`` (server
  VAD on or off) and truncates the item to what the output transport played
  (:mod:`.interruption`);
- ``response.create`` goes through the active-response guard, and
  ``conversation_already_has_active_response`` / ``response_cancel_not_active``
  are absorbed;
- a dead socket, an expired session or a refused key is classified and
  recovered from, or ends in a typed fatal error (:mod:`.recovery`);
- sessions roll over before the cap, seeded from the call's memory, with the
  user's audio held and replayed (:mod:`.rollover`);
- every state transition, cancel, truncate, reconnect, rollover, rate-limit
  update and token rotation is published (:mod:`.events`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    ProposedUserStartedSpeakingFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.openai._constants import OPENAI_SAMPLE_RATE
from pipecat.services.openai.realtime import events as rt

from voxpipe.call import (
    AudioReceived,
    CallState,
    CallTrigger,
    CancelConfirmed,
    GuardErrorCode,
    InterruptionSource,
    NetworkFailed,
    ProviderErrored,
    ResponseQueued,
    ResponseReason,
    ResponseRequest,
    classify,
)
from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.processors.realtime.base import ResponseCancelFor
from voxpipe.processors.realtime.events import (
    ProviderErrorSeen,
    RateLimit,
    RateLimitsUpdated,
    ResponseCancelled,
    ResponseCreated,
    ResponseRequested,
)
from voxpipe.processors.realtime.interruption import BOT_ACTIVE, InterruptionMixin
from voxpipe.processors.realtime.rollover import RolloverMixin
from voxpipe.transports.tokens import EphemeralTokenProvider

TICK_S = 0.1
RATE_LIMIT_CODE = "rate_limit_exceeded"
MAX_RATE_LIMIT_RETRIES = 4
MAX_RATE_LIMIT_WAIT_S = 30.0
_GUARD_CODES = {code.value: code for code in GuardErrorCode}


class RealtimeService(InterruptionMixin, RolloverMixin):
    """The realtime brain of a voxpipe call.

    Args (beyond pipecat's ``OpenAIRealtimeLLMService``):
        api_key: a static server-side key (or pass ``token_provider``).
        token_provider: :class:`~voxpipe.transports.tokens.StaticKeyProvider` or
            :class:`~voxpipe.transports.tokens.EphemeralTokenProvider`.
        playback: the output transport's playback clock; truncation uses it.
        now_ms: the clock ``playback`` runs on (the transport's).
        context: the call's ``LLMContext`` (tools, and the record the
            aggregators keep).
        rollover, backoff, timeouts: configuration of the cores.
        random_fn: randomness for backoff jitter (seeded in tests).
        stall_timeout_ms: a response that sends nothing for this long is
            treated as a dead connection.
        strict_states: raise on an illegal state transition (development).

    Event handlers: ``on_call_event(service, event)`` for every
    :data:`~voxpipe.processors.realtime.events.CallEvent`, and
    ``on_fatal_error(service, error)`` once, when the call gives up.
    """

    _ticker: asyncio.Task[None] | None = None
    _rate_limit_retries = 0
    _retry_task: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        """Start the service and its timer (state timeouts, stalls, rollover)."""
        await super().start(frame)
        if isinstance(self.tokens, EphemeralTokenProvider):
            await self.tokens.start()  # mint now, refresh in the background
        if self._ticker is None:
            self._ticker = self.create_task(self._tick_loop(), name="realtime-tick")

    async def _disconnect(self) -> None:
        if self._ticker is not None:
            await self.cancel_task(self._ticker)
            self._ticker = None
        if self._retry_task is not None:
            await self.cancel_task(self._retry_task)
            self._retry_task = None
        await super()._disconnect()

    async def cleanup(self) -> None:
        """Stop the token rotation along with the service."""
        await super().cleanup()
        await self.tokens.aclose()

    async def _tick_loop(self) -> None:
        while not self._failed:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except Exception as exc:  # a timer must never die with the call
                logger.exception(f"{self}: tick failed: {exc}")

    async def _tick(self) -> None:
        moved = self.machine.tick(self._now())
        await self.publish_transitions()
        if moved is not None and moved.current is CallState.RECOVERING:
            await self._clear_stuck_response()
        if moved is not None and moved.current is CallState.RECONNECTING:
            self.begin_recovery(NetworkFailed("rollover timed out"))
        stalled = self.now_ms() - self._last_server_event_ms > self.stall_timeout_ms
        if stalled and self.guard.response_active and self._websocket is not None:
            self.begin_recovery(NetworkFailed(f"no server event for {self.stall_timeout_ms} ms"))
            return
        await self.maybe_roll_over()

    async def _clear_stuck_response(self) -> None:
        if self.guard.response_active:
            active = self.guard.active_response_id
            await self.send_client_event(ResponseCancelFor(response_id=active))
        self.guard.on_session_reset()
        await self.fire(CallTrigger.RECOVERED)
        await self.carry_out(self.guard.flush())

    # -- frames ------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """pipecat's handling, plus the bot's speaking state for playout tracking."""
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStoppedSpeakingFrame):
            await self._played_out()

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Remember tool results for the next session's seed, then push."""
        if isinstance(frame, FunctionCallResultFrame) and direction is FrameDirection.DOWNSTREAM:
            self.remember_tool(frame.function_name, frame.result)
        await super().push_frame(frame, direction)

    async def _send_user_audio(self, frame: InputAudioRawFrame) -> None:
        audio = frame.audio
        if frame.sample_rate != OPENAI_SAMPLE_RATE:
            audio = await self._resampler.resample(audio, frame.sample_rate, OPENAI_SAMPLE_RATE)
        if not audio:
            return
        for chunk in self.relay.on_audio(audio):
            self.machine.note_user_audio(chunk.seq)
            await self._append_user_audio(chunk.audio)

    async def request_response(self) -> None:
        """Ask for a response now, or right after the active one (never both at once)."""
        await self._create_response()

    async def _create_response(self) -> None:
        if not self._api_session_ready or self._failed:
            await super()._create_response()  # pipecat defers it to session.updated
            return
        reason = (
            ResponseReason.TOOL_RESULT
            if self.machine.state is CallState.CALLING_TOOL
            else ResponseReason.APPLICATION
        )
        request = ResponseRequest(uuid.uuid4().hex, reason)
        outputs = self.guard.request_response(request)
        for output in outputs:
            if isinstance(output, ResponseQueued):
                await self.publish(ResponseRequested(reason, queued=True))
        await self.carry_out(outputs)

    # -- server events -----------------------------------------------------------

    async def dispatch_server_message(self, message: str | bytes) -> None:
        """Parse one server message and route it (ours first, then pipecat's)."""
        try:
            evt = rt.parse_server_event(message)
        except Exception as exc:
            logger.warning(f"{self}: unparseable server event dropped: {exc}")
            return
        if evt is None:
            return
        handler = self._handlers().get(evt.type)
        if handler is not None:
            await handler(evt)

    def _handlers(self) -> dict[str, Callable[[Any], Awaitable[None]]]:
        return {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "response.created": self._on_response_created,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_text.delta": self._on_text_delta,
            "response.function_call_arguments.done": self._on_function_call,
            "response.done": self._on_response_done,
            "conversation.item.added": self._handle_evt_conversation_item_added,
            "conversation.item.done": self._handle_evt_conversation_item_done,
            "conversation.item.retrieved": self._handle_conversation_item_retrieved,
            "conversation.item.input_audio_transcription.delta": (
                self._handle_evt_input_audio_transcription_delta
            ),
            "conversation.item.input_audio_transcription.completed": self._on_transcription,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.committed": self._on_committed,
            "rate_limits.updated": self._on_rate_limits,
            "error": self._on_error,
        }

    async def _on_session_created(self, evt: Any) -> None:
        self.machine.note_session(evt.session.id or "")
        await self._handle_evt_session_created(evt)

    async def _on_session_updated(self, evt: Any) -> None:
        await self._handle_evt_session_updated(evt)
        await self.session_ready()

    async def _on_response_created(self, evt: Any) -> None:
        response_id = evt.response.id
        self.machine.note_response(response_id)
        outputs = self.guard.on_response_created(response_id)
        if self.machine.state is CallState.LISTENING:
            await self.fire(CallTrigger.RESPONSE_REQUESTED)  # server VAD made this one
        elif self.machine.state is CallState.CALLING_TOOL:
            await self.fire(CallTrigger.TOOL_RESULT_SENT)
        await self.publish(ResponseCreated(response_id))
        await self.carry_out(outputs)
        await self._handle_evt_response_created(evt)

    async def _on_audio_delta(self, evt: Any) -> None:
        if self.response_is_dropped(evt.response_id) or not self.tracker.accepts_audio(evt.item_id):
            return  # output of a cancelled response: never played
        if evt.item_id not in self._marked_items:
            self._marked_items.add(evt.item_id)
            # In order with the audio: the transport's clock attributes what follows to it.
            await self.push_frame(PlaybackMarkerFrame(utterance_id=evt.item_id))
        self.tracker.handle(AudioReceived(evt.item_id, len(evt.delta) * 3 // 4))
        if self.machine.state is CallState.THINKING:
            await self.fire(CallTrigger.AUDIO_STARTED)
        await self._handle_evt_audio_delta(evt)

    async def _on_transcript_delta(self, evt: Any) -> None:
        if self.response_is_dropped(evt.response_id):
            return
        self._transcripts.setdefault(evt.item_id, []).append(evt.delta)
        await self._handle_evt_audio_transcript_delta(evt)

    async def _on_text_delta(self, evt: Any) -> None:
        if not self.response_is_dropped(evt.response_id):
            await self._handle_evt_text_delta(evt)

    async def _on_function_call(self, evt: Any) -> None:
        if self.response_is_dropped(evt.response_id):
            return
        await self.fire(CallTrigger.TOOL_CALL_REQUESTED)
        await self._handle_evt_function_call_arguments_done(evt)

    async def _on_response_done(self, evt: Any) -> None:
        response = evt.response
        cancelled = response.status == "cancelled"
        usage = response.usage
        if response.status == "completed":
            self._rate_limit_retries = 0
        if usage is not None and usage.input_tokens is not None:
            self.rollover_policy.on_response_done(usage.input_tokens)
        for item in response.output or []:
            text = "".join(self._transcripts.pop(item.id, []))
            self.remember_assistant(item.id, text, interrupted=cancelled)
        outputs = self.guard.on_response_done(response.id)
        confirmed = any(isinstance(o, CancelConfirmed) for o in outputs)
        if cancelled and not confirmed:
            reason = (response.status_details or {}).get("reason")
            await self.publish(ResponseCancelled(response.id, reason))
        if not confirmed:
            await self._finish_state(response)
        await self._handle_evt_response_done(evt)
        await self.carry_out(outputs)

    async def _finish_state(self, response: Any) -> None:
        state = self.machine.state
        if response.status == "failed":
            if await self.fire(CallTrigger.RESPONSE_FAILED):
                await self.fire(CallTrigger.RECOVERED)
            if _failure_code(response) == RATE_LIMIT_CODE:
                self._retry_after_rate_limit()
        elif state in (CallState.THINKING, CallState.CANCELLING):
            await self.fire(CallTrigger.RESPONSE_DONE)  # nothing (more) to play out
        elif state is CallState.SPEAKING:
            # RESPONSE_DONE once the caller heard it all (BotStoppedSpeaking).
            self._playout_pending = True
            if not self._bot_speaking:
                await self._played_out()

    def _retry_after_rate_limit(self) -> None:
        """Ask again once the exhausted limit resets, a bounded number of times."""
        if self._rate_limit_retries >= MAX_RATE_LIMIT_RETRIES:
            logger.warning(f"{self}: rate limited {self._rate_limit_retries} times; not retrying")
            return
        self._rate_limit_retries += 1
        # Back off from a second, never past the provider's own reset time.
        waits = [r.reset_seconds for r in self.rate_limits if r.remaining <= 0]
        backoff_s = float(2 ** (self._rate_limit_retries - 1))
        delay_s = min(MAX_RATE_LIMIT_WAIT_S, backoff_s, max(waits, default=backoff_s))
        if self._retry_task is not None:
            self._retry_task.cancel()
        self._retry_task = self.create_task(
            self._retry_response(delay_s), name="realtime-rate-limit-retry"
        )

    async def _retry_response(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.machine.state is CallState.LISTENING and not self.guard.response_active:
            await self.request_response()

    async def _on_transcription(self, evt: Any) -> None:
        self.remember_user_transcript(evt.item_id, evt.transcript)
        await self.handle_evt_input_audio_transcription_completed(evt)

    async def _on_speech_started(self, evt: Any) -> None:
        self._user_speaking = True
        self._server_speech_at_ms = self.now_ms()
        self._response_create_owed = False
        await self.broadcast_frame(ProposedUserStartedSpeakingFrame)
        if self.machine.state in BOT_ACTIVE:
            # Barge-in: stop the bot now rather than after the aggregator's round trip.
            await self.interrupt(InterruptionSource.SERVER_VAD)

    async def _on_speech_stopped(self, evt: Any) -> None:
        self._user_speaking = False
        await self._handle_evt_speech_stopped(evt)

    async def _on_committed(self, evt: Any) -> None:
        self.relay.on_committed()
        self.remember_user_item(evt.item_id)

    async def _on_rate_limits(self, evt: Any) -> None:
        limits = tuple(
            RateLimit(
                str(entry.get("name", "")),
                int(entry.get("limit") or 0),
                int(entry.get("remaining") or 0),
                float(entry.get("reset_seconds") or 0.0),
            )
            for entry in evt.rate_limits
        )
        self.rate_limits = limits
        update = RateLimitsUpdated(limits)
        if update.exhausted:
            logger.warning(f"{self}: rate limits exhausted: {limits}")
        else:
            logger.debug(f"{self}: rate limits {limits}")
        await self.publish(update)

    async def _on_error(self, evt: Any) -> None:
        error = evt.error
        if await self._maybe_handle_evt_retrieve_conversation_item_error(evt):
            return
        guard_code = _GUARD_CODES.get(error.code or "")
        if guard_code is not None:
            await self.publish(ProviderErrorSeen(error.code, error.type, error.message, True))
            await self.carry_out(self.guard.on_error(guard_code))
            return
        signal = ProviderErrored(error.code, error.type, error.message)
        if classify(signal) is not None:
            await self.publish(ProviderErrorSeen(error.code, error.type, error.message, False))
            self.begin_recovery(signal)
            return
        # Anything else (a refused truncate, a bad item) is this request's problem, not the call's.
        await self.publish(ProviderErrorSeen(error.code, error.type, error.message, False))
        await self.push_error(error_msg=f"realtime provider error {error.code}: {error.message}")


def _failure_code(response: Any) -> str | None:
    details = response.status_details if isinstance(response.status_details, dict) else {}
    error = details.get("error")
    return error.get("code") if isinstance(error, dict) else None
