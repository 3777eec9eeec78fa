"""Server events: what the provider says, routed to the cores and then to pipecat.

Each ``type`` has one handler. The cores hear first (guard, tracker, state
machine, memory, relay); pipecat's own handler runs after, so its frames
(TTS audio, transcripts, function calls, metrics) keep flowing as before,
except for output of a cancelled response, which is dropped here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from pipecat.frames.frames import ProposedUserStartedSpeakingFrame
from pipecat.services.openai.realtime import events as rt

from voxpipe.call import (
    AudioReceived,
    CallState,
    CallTrigger,
    CancelConfirmed,
    GuardErrorCode,
    InterruptionSource,
    ProviderErrored,
    classify,
)
from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.processors.realtime.events import (
    ProviderErrorSeen,
    RateLimit,
    RateLimitsUpdated,
    ResponseCancelled,
    ResponseCreated,
    ServerSpeechStopped,
)
from voxpipe.processors.realtime.interruption import BOT_ACTIVE, InterruptionMixin
from voxpipe.processors.realtime.rollover import RolloverMixin

RATE_LIMIT_CODE = "rate_limit_exceeded"
MAX_RATE_LIMIT_RETRIES = 4
MAX_RATE_LIMIT_WAIT_S = 30.0
DEFAULT_SILENCE_MS = 500  # server_vad's silence_duration_ms when the session sets none
_GUARD_CODES = {code.value: code for code in GuardErrorCode}


class ServerEventsMixin(InterruptionMixin, RolloverMixin):
    """Routes each server event to the cores, then to pipecat's handler."""

    _rate_limit_retries = 0
    _retry_task: asyncio.Task[None] | None = None

    async def request_response(self) -> None:
        """Ask for a response now, or right after the active one (never both at once)."""
        await self._create_response()

    async def _handle_user_stopped_speaking(self, frame: Any) -> None:
        if self._is_turn_detection_disabled():
            # Local turns: commit the caller's audio; the response goes through the guard.
            await self.send_client_event(rt.InputAudioBufferCommitEvent())
            await self.request_response()

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
            "conversation.item.added": self._on_item_added,
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

    async def _on_item_added(self, evt: Any) -> None:
        self.note_live_item(evt.item.id)
        await self._handle_evt_conversation_item_added(evt)

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
        self._audio_response_id = evt.response_id
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
            if cancelled:
                text = self._heard_part(item.id, text)
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

    def _heard_part(self, item_id: str, text: str) -> str:
        """The words of a cut reply the caller heard, in proportion to the audio played.

        The transcript runs ahead of the audio, so a cancelled reply's text holds
        words nobody heard (a guardrail trip's among them): they must not reach
        a later session's seed.
        """
        if not self.tracker.has_item(item_id):
            return text
        received = self.tracker.received_ms(item_id)
        if received <= 0:
            return ""
        words = text.split()
        heard = int(len(words) * min(1.0, self.tracker.truncate_point(item_id) / received))
        return " ".join(words[:heard])

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
        # Before pipecat's ProposedUserStoppedSpeakingFrame: the speech end is known first.
        await self.publish(self.server_speech_stopped(evt.audio_end_ms, evt.item_id))
        await self._handle_evt_speech_stopped(evt)

    def server_speech_stopped(self, audio_end_ms: int, item_id: str | None) -> ServerSpeechStopped:
        """Which caller frame the server's speech end lies in (see :class:`ServerSpeechStopped`)."""
        silence_ms = self._vad_silence_ms()
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

    def _vad_silence_ms(self) -> int | None:
        """The server VAD's end-of-turn silence; None when its wait is not a fixed silence."""
        properties = getattr(self._settings, "session_properties", None)
        audio = getattr(properties, "audio", None)
        detection = getattr(getattr(audio, "input", None), "turn_detection", None)
        if detection is None:  # the provider's default: server_vad
            return DEFAULT_SILENCE_MS
        if isinstance(detection, rt.TurnDetection) and detection.type in (None, "server_vad"):
            silence = detection.silence_duration_ms
            return DEFAULT_SILENCE_MS if silence is None else silence
        return None

    async def _on_committed(self, evt: Any) -> None:
        self.relay.on_committed()
        if self.remember_user_item(evt.item_id):
            await self.prune_live_session()

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
