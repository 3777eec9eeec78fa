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

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.openai._constants import OPENAI_SAMPLE_RATE

from voxpipe.call import (
    CallState,
    CallTrigger,
    NetworkFailed,
    ResponseQueued,
    ResponseReason,
    ResponseRequest,
)
from voxpipe.processors.realtime.base import ResponseCancelFor
from voxpipe.processors.realtime.events import (
    ResponseRequested,
)
from voxpipe.processors.realtime.handlers import ServerEventsMixin
from voxpipe.transports.tokens import EphemeralTokenProvider

TICK_S = 0.1


class RealtimeService(ServerEventsMixin):
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
        """Remember tool results for the next session's seed, then push.

        Audio of a response that was interrupted while its delta was being
        handled (an await in pipecat's handler) is dropped here, at the last
        moment, so it cannot reach the output behind the interruption.
        Frames are not split: the output transport's queues hold more small
        frames at an interruption than few large ones (measured: more audio
        leaked past a guardrail cut with 20 ms frames than with the deltas).
        """
        if isinstance(frame, TTSAudioRawFrame) and self.response_is_dropped(
            self._audio_response_id
        ):
            return
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
            await self._append_user_audio(chunk.audio, frame.id)

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
