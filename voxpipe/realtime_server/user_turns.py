"""The user's side of a session: VAD turns, committed audio items, transcripts.

A mixin of :class:`voxpipe.realtime_server.session.RealtimeSession`, kept apart so
each file reads on its own.
"""

from __future__ import annotations

import base64

from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    InputAudioBufferTimeoutTriggered,
    RealtimeConversationItemUserMessage,
)
from openai.types.realtime import (
    conversation_item_input_audio_transcription_completed_event as transcription_completed,
)
from openai.types.realtime import (
    conversation_item_input_audio_transcription_failed_event as transcription_failed,
)
from openai.types.realtime.realtime_conversation_item_user_message import Content

from voxpipe.audio import AudioFormat
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.conversation import Conversation, ItemRecord
from voxpipe.realtime_server.effects import Output, TranscriptionRequested, VadScoringRequested
from voxpipe.realtime_server.ids import IdFactory, IdKind
from voxpipe.realtime_server.input_audio import CommittedAudio, InputAudioBuffer
from voxpipe.realtime_server.protocol_errors import invalid_value
from voxpipe.realtime_server.session_config import SessionConfig
from voxpipe.realtime_server.turn_detection import (
    SilenceBegan,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    VadFrame,
)

TRANSCRIBE_RATE = 16_000
# Silence kept under server VAD beyond the prefix padding: frames still being scored.
SILENCE_KEPT_MS = 1_000


class UserTurns:
    """Turn detection and user audio items (mixin)."""

    ids: IdFactory
    config: SessionConfig
    conversation: Conversation
    buffer: InputAudioBuffer
    detector: TurnDetector | None

    def __init__(self) -> None:
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self.idle_since_ms: int | None = None

    def event_id(self) -> str:
        raise NotImplementedError

    def interrupt_for_speech(self, now_ms: int) -> list[Output]:
        raise NotImplementedError

    def auto_response(self, now_ms: int) -> list[Output]:
        raise NotImplementedError

    def reset_turn(self) -> None:
        """Forget speech in progress (buffer committed, cleared or reconfigured)."""
        self._speech_item_id = None
        if self.detector is not None:
            self.detector.reset(self.buffer.written_ms)

    def vad_frames_ready(self, frames: list[VadFrame]) -> list[Output]:
        """Ask the driver to score frames (only while server VAD is on)."""
        return [VadScoringRequested(tuple(frames))] if frames and self.detector else []

    def vad_scored(self, scored: list[tuple[VadFrame, float]], now_ms: int) -> list[Output]:
        """Feed frame scores; emits speech start/stop and, at the end of a turn, commits it."""
        outputs: list[Output] = []
        for frame, probability in scored:
            if self.detector is None:
                break
            if frame.end_ms <= self.buffer.start_ms:
                continue  # scored after its audio was committed or cleared
            turn_event = self.detector.update(frame.start_ms, frame.end_ms, probability)
            if isinstance(turn_event, SpeechStarted):
                outputs += self._speech_started(turn_event.audio_start_ms, now_ms)
            elif isinstance(turn_event, SilenceBegan):
                outputs += self._silence_began(turn_event.speech_end_ms)
            elif isinstance(turn_event, SpeechStopped):
                outputs += self._speech_stopped(turn_event, now_ms)
        if scored and self._speech_item_id is None and self.config.turn is not None:
            # Silence: only the prefix padding before a speech start can still join a
            # turn, so older audio goes (2 min of it once became one 120 s item).
            keep_ms = self.config.turn.prefix_padding_ms + SILENCE_KEPT_MS
            self.buffer.drop_before(scored[-1][0].start_ms - keep_ms)
        return outputs

    def _speech_started(self, audio_start_ms: int, now_ms: int) -> list[Output]:
        self._speech_item_id = self.ids.new(IdKind.ITEM)
        self._speech_start_ms = audio_start_ms
        self.idle_since_ms = None
        outputs: list[Output] = [
            InputAudioBufferSpeechStartedEvent(
                type="input_audio_buffer.speech_started",
                event_id=self.event_id(),
                audio_start_ms=audio_start_ms,
                item_id=self._speech_item_id,
            )
        ]
        if self.config.turn and self.config.turn.interrupt_response:
            outputs += self.interrupt_for_speech(now_ms)
        return outputs

    def _silence_began(self, speech_end_ms: int) -> list[Output]:
        if self._speech_item_id is None:
            return []
        audio = self.buffer.peek_range(self._speech_start_ms, speech_end_ms)
        pcm = codec.to_pcm16(audio, self.buffer.format, TRANSCRIBE_RATE)
        return [
            TranscriptionRequested(
                self._speech_item_id,
                pcm,
                TRANSCRIBE_RATE,
                speech_end_ms=speech_end_ms,
                speculative=True,
            )
        ]

    def _speech_stopped(self, stopped: SpeechStopped, now_ms: int) -> list[Output]:
        audio_end_ms = stopped.audio_end_ms
        item_id = self._speech_item_id or self.ids.new(IdKind.ITEM)
        self._speech_item_id = None
        outputs: list[Output] = [
            InputAudioBufferSpeechStoppedEvent(
                type="input_audio_buffer.speech_stopped",
                event_id=self.event_id(),
                audio_end_ms=audio_end_ms,
                item_id=item_id,
            )
        ]
        committed = self.buffer.commit_range(self._speech_start_ms, audio_end_ms)
        outputs += self.commit_user_audio(item_id, committed, speech_end_ms=stopped.speech_end_ms)
        if self.config.turn and self.config.turn.create_response:
            outputs += self.auto_response(now_ms)
        return outputs

    def commit_user_audio(
        self, item_id: str, committed: CommittedAudio, *, speech_end_ms: int | None = None
    ) -> list[Output]:
        """A user audio item from committed audio, then its transcription."""
        item = RealtimeConversationItemUserMessage(
            id=item_id,
            object="realtime.item",
            type="message",
            role="user",
            status="completed",
            content=[Content(type="input_audio", transcript=None)],
        )
        record = ItemRecord(
            item=item, audio=bytearray(committed.data), audio_format=committed.audio_format
        )
        previous = self.conversation.add(record)
        outputs: list[Output] = [
            InputAudioBufferCommittedEvent(
                type="input_audio_buffer.committed",
                event_id=self.event_id(),
                item_id=item_id,
                previous_item_id=previous,
            )
        ]
        outputs += self.item_added_and_done(record, previous)
        pcm = codec.to_pcm16(committed.data, committed.audio_format, TRANSCRIBE_RATE)
        outputs.append(
            TranscriptionRequested(item_id, pcm, TRANSCRIBE_RATE, speech_end_ms=speech_end_ms)
        )
        return outputs

    def item_added_and_done(self, record: ItemRecord, previous: str | None) -> list[Output]:
        """``conversation.item.added`` then ``conversation.item.done``."""
        return [
            ConversationItemAdded(
                type="conversation.item.added",
                event_id=self.event_id(),
                previous_item_id=previous,
                item=record.to_model(),
            ),
            ConversationItemDone(
                type="conversation.item.done",
                event_id=self.event_id(),
                previous_item_id=previous,
                item=record.to_model(),
            ),
        ]

    def attach_client_audio(self, record: ItemRecord) -> None:
        """Keep the audio of a client-created user audio item beside it."""
        item = record.item
        if not isinstance(item, RealtimeConversationItemUserMessage):
            return
        for index, part in enumerate(item.content):
            if part.type == "input_audio" and part.audio:
                try:
                    record.audio.extend(base64.b64decode(part.audio, validate=True))
                except ValueError:
                    raise invalid_value(
                        f"item.content.{index}.audio",
                        "Invalid 'audio': expected base64-encoded audio bytes.",
                    ) from None
                part.audio = None
        if record.audio_format is AudioFormat.PCM16_24K and len(record.audio) % 2:
            raise invalid_value(
                "item.content.audio", "audio/pcm is 16-bit: the byte count must be even."
            )

    def transcription_completed(self, item_id: str, transcript: str) -> list[Output]:
        """Store a user item's transcript; report it if the session asked for transcription."""
        if item_id not in self.conversation:
            return []
        record = self.conversation.get(item_id)
        item = record.item
        if isinstance(item, RealtimeConversationItemUserMessage) and item.content:
            item.content[0].transcript = transcript
        if not self.config.transcription_enabled:
            return []
        return [
            ConversationItemInputAudioTranscriptionDeltaEvent(
                type="conversation.item.input_audio_transcription.delta",
                event_id=self.event_id(),
                item_id=item_id,
                content_index=0,
                delta=transcript,
            ),
            ConversationItemInputAudioTranscriptionCompletedEvent(
                type="conversation.item.input_audio_transcription.completed",
                event_id=self.event_id(),
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage=transcription_completed.UsageTranscriptTextUsageDuration(
                    type="duration", seconds=record.audio_ms / 1000
                ),
            ),
        ]

    def transcription_failed(self, item_id: str, message: str) -> list[Output]:
        """Report a failed transcription (if transcription was asked for)."""
        if not self.config.transcription_enabled or item_id not in self.conversation:
            return []
        return [
            ConversationItemInputAudioTranscriptionFailedEvent(
                type="conversation.item.input_audio_transcription.failed",
                event_id=self.event_id(),
                item_id=item_id,
                content_index=0,
                error=transcription_failed.Error(
                    type="transcription_error", code="transcription_failed", message=message
                ),
            )
        ]

    def idle_check(self, now_ms: int) -> list[Output]:
        """``timeout_triggered`` once the user has been silent for ``idle_timeout_ms``."""
        turn = self.config.turn
        if not turn or not turn.idle_timeout_ms or self.idle_since_ms is None:
            return []
        if now_ms - self.idle_since_ms < turn.idle_timeout_ms or self._speech_item_id:
            return []
        self.idle_since_ms = None
        position = self.buffer.written_ms
        outputs: list[Output] = [
            InputAudioBufferTimeoutTriggered(
                type="input_audio_buffer.timeout_triggered",
                event_id=self.event_id(),
                audio_start_ms=position,
                audio_end_ms=position,
                item_id=self.ids.new(IdKind.ITEM),
            )
        ]
        if turn.create_response:
            outputs += self.auto_response(now_ms)
        return outputs
