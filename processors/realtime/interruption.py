"""Interruptions: stop the audio, cancel the response, truncate to what was heard.

Every interruption reaches the service as pipecat's ``InterruptionFrame``:
downstream from the user aggregator (a barge-in, local or server VAD),
upstream from a processor after the brain (a guardrail's
``broadcast_interruption()``), or from :meth:`InterruptionMixin.interrupt`
(the application). The service closes its audio gate the moment the frame is
queued (before any await), so no delta of the cancelled response is pushed
after it; then :func:`~voxpipe.call.plan_interruption` says what to send.
"""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.openai.realtime import events as rt

from voxpipe.call import (
    CallState,
    CallTrigger,
    InterruptionSource,
    PlaybackFinished,
    plan_interruption,
)
from voxpipe.processors.realtime.base import RealtimeBase, ResponseCancelFor
from voxpipe.processors.realtime.events import (
    InterruptionHandled,
    ItemTruncated,
)

# States in which the bot owns the floor: an interruption there cuts a response.
BOT_ACTIVE = (CallState.THINKING, CallState.SPEAKING, CallState.CALLING_TOOL)
# A server speech_started this recent explains an InterruptionFrame from the aggregator.
_SERVER_VAD_WINDOW_MS = 1_500


class InterruptionMixin(RealtimeBase):
    """Cancel and truncate on any interruption; drop the cancelled response's output."""

    _pending_source: InterruptionSource | None = None
    _server_speech_at_ms: float = -1e12
    _interruptions_seen: int = 0

    async def interrupt(self, source: InterruptionSource = InterruptionSource.APPLICATION) -> None:
        """Interrupt the bot now: stop the output both ways, then cancel and truncate.

        The application calls this; the service calls it itself on a server
        VAD barge-in, so the audio stops without waiting for the aggregator.
        """
        self._close_gate()
        await self.broadcast_interruption()  # the output transport flushes first
        if self.machine.state in BOT_ACTIVE or self.guard.response_active:
            await self._cut_response(source)

    async def queue_frame(
        self,
        frame: Frame,
        direction: FrameDirection = FrameDirection.DOWNSTREAM,
        callback: Any = None,
    ) -> None:
        """Close the audio gate as soon as an interruption is queued, before any await."""
        if isinstance(frame, InterruptionFrame):
            self._close_gate()
            if self._pending_source is None:
                self._pending_source = self._source_for(direction)
        await super().queue_frame(frame, direction, callback)

    def _close_gate(self) -> None:
        active = self.guard.active_response_id
        if active is not None and self.machine.state in BOT_ACTIVE:
            self._dropping.add(active)

    def _source_for(self, direction: FrameDirection) -> InterruptionSource:
        if direction is FrameDirection.UPSTREAM:
            return InterruptionSource.PROCESSOR  # from a processor after the brain
        if self.now_ms() - self._server_speech_at_ms < _SERVER_VAD_WINDOW_MS:
            return InterruptionSource.SERVER_VAD
        return InterruptionSource.LOCAL_VAD

    async def _handle_interruption(self) -> None:
        source = self._pending_source or InterruptionSource.LOCAL_VAD
        self._pending_source = None
        if self._is_turn_detection_disabled():
            # Local turn detection: the input buffer holds the barge-in's onset.
            await self.send_client_event(rt.InputAudioBufferClearEvent())
            await self._replay_user_audio_preroll()
        if self.machine.state not in BOT_ACTIVE and not self.guard.response_active:
            return  # the bot is listening already: nothing to cut
        await self._cut_response(source)

    async def _cut_response(self, source: InterruptionSource) -> None:
        self._interruptions_seen += 1
        item_id = self.tracker.latest_item()
        played = None
        if item_id is not None:
            played = self.playback.played_ms(item_id, self.now_ms())
        response_id = self.guard.active_response_id
        plan = plan_interruption(
            machine=self.machine,
            guard=self.guard,
            tracker=self.tracker,
            source=source,
            now_ms=self._now(),
            item_id=item_id,
            played_ms=None if played is None else int(played),
        )
        if response_id is not None:
            self._dropping.add(response_id)
        cancel = plan.cancel
        if cancel is not None:
            await self.send_client_event(ResponseCancelFor(response_id=cancel.response_id))
        if plan.truncation is not None:
            t = plan.truncation
            await self.send_client_event(
                rt.ConversationItemTruncateEvent(
                    item_id=t.item_id, content_index=t.content_index, audio_end_ms=t.audio_end_ms
                )
            )
        await self.publish(
            InterruptionHandled(source, item_id, response_id, cancel_sent=cancel is not None)
        )
        if plan.truncation is not None:
            t = plan.truncation
            await self.publish(
                ItemTruncated(t.item_id, t.audio_end_ms, played or 0.0, t.received_ms)
            )
        await self.publish_transitions()
        # The cancel went out first, above; the rest (dropped requests) now.
        await self.carry_out([o for o in plan.guard_outputs if o is not cancel])
        await self._end_response_frames()

    async def _end_response_frames(self) -> None:
        await self.stop_all_metrics()
        self._response_create_owed = False
        self._playout_pending = False
        if self._current_assistant_response:
            await self.push_frame(LLMFullResponseEndFrame())
        # No TTSStoppedFrame (pipecat sends one): the output transport would
        # flush its resampler's tail and play it after the interruption.
        self._current_assistant_response = None
        self._current_audio_response = None

    async def _truncate_current_audio_response(self) -> None:
        """pipecat truncates by wall clock here; the interruption path truncates instead."""

    async def _played_out(self) -> None:
        """The bot went quiet: a finished response's audio has been heard in full."""
        self._bot_speaking = False
        item_id = self.tracker.latest_item()
        if item_id is not None and not self.guard.response_active:
            received = self.tracker.received_ms(item_id)
            self.tracker.handle(PlaybackFinished(item_id, received, interrupted=False))
        if self._playout_pending and not self.guard.response_active:
            self._playout_pending = False
            await self.fire(CallTrigger.RESPONSE_DONE)
