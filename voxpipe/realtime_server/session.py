"""The sans-I/O Realtime session: client events in, server events and effects out.

One :class:`RealtimeSession` per WebSocket. It owns the configuration, the
conversation, the input audio buffer, turn detection, the active response
and rate limits; it never reads a clock, sleeps or touches a socket.
Anything a client sends that breaks the protocol comes back as an ``error``
event and the session carries on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import pydantic
from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeletedEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncatedEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearedEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
    SessionUpdateEvent,
)
from openai.types.realtime.realtime_server_event import ConversationItemRetrieved

from voxpipe.realtime_server import codec, parsing
from voxpipe.realtime_server.conversation import (
    Conversation,
    ConversationLimits,
    ItemRecord,
    validate_item,
)
from voxpipe.realtime_server.effects import (
    CloseRequested,
    Output,
    PlayoutCutRequested,
    TranscriptionRequested,
)
from voxpipe.realtime_server.ids import IdFactory, IdKind
from voxpipe.realtime_server.input_audio import InputAudioBuffer, decode_append
from voxpipe.realtime_server.protocol_errors import (
    ErrorCode,
    ErrorType,
    ProtocolError,
    invalid_request,
    session_expired,
)
from voxpipe.realtime_server.rate_limits import RateLimiter, RateLimitPolicy
from voxpipe.realtime_server.response_control import ResponseControl
from voxpipe.realtime_server.server_playout import ServerPlayout
from voxpipe.realtime_server.session_config import SessionConfig
from voxpipe.realtime_server.turn_detection import TurnDetector
from voxpipe.realtime_server.user_turns import TRANSCRIBE_RATE, UserTurns

CLOSE_NORMAL = 1000


class Media(enum.Enum):
    """How a session's audio travels."""

    WEBSOCKET = "websocket"
    """As base64 in events: the client appends input and plays (and truncates) the reply."""
    WEBRTC = "webrtc"
    """On media tracks: the server hears the input and plays the reply, so it truncates it."""


class RealtimeSession(ResponseControl, UserTurns):
    """The protocol state of one Realtime connection."""

    def __init__(
        self,
        *,
        model: str,
        ids: IdFactory,
        now_ms: int,
        rate_limits: RateLimitPolicy | None = None,
        conversation_limits: ConversationLimits | None = None,
        media: Media = Media.WEBSOCKET,
    ) -> None:
        self.ids = ids
        self.media = media
        self.playout: ServerPlayout | None = ServerPlayout(ids) if media is Media.WEBRTC else None
        self.session_id = ids.new(IdKind.SESSION)
        self.config = SessionConfig(model)
        self.conversation = Conversation(conversation_limits)
        self.buffer = InputAudioBuffer(self.config.input_format)
        self.limiter = RateLimiter(rate_limits or RateLimitPolicy(), now_ms)
        self.detector: TurnDetector | None = None
        self.assistant_audio_sent = False
        ResponseControl.__init__(self)
        UserTurns.__init__(self)
        self._apply_turn_config()
        self._handlers: dict[type[pydantic.BaseModel], Callable[[Any, int], list[Output]]] = {
            SessionUpdateEvent: self._on_session_update,
            InputAudioBufferAppendEvent: self._on_append,
            InputAudioBufferCommitEvent: self._on_commit,
            InputAudioBufferClearEvent: self._on_clear,
            OutputAudioBufferClearEvent: self._on_output_clear,
            ConversationItemCreateEvent: self._on_item_create,
            ConversationItemRetrieveEvent: self._on_item_retrieve,
            ConversationItemTruncateEvent: self._on_item_truncate,
            ConversationItemDeleteEvent: self._on_item_delete,
            ResponseCreateEvent: self._on_response_create,
            ResponseCancelEvent: self._on_response_cancel,
        }

    def event_id(self) -> str:
        """A fresh server event id."""
        return self.ids.new(IdKind.EVENT)

    def start(self) -> list[Output]:
        """The greeting: ``session.created``."""
        return [
            SessionCreatedEvent(
                type="session.created", event_id=self.event_id(), session=self._session_model()
            )
        ]

    def _session_model(self) -> Any:
        model = self.config.model()
        model.__pydantic_extra__ = {"id": self.session_id, "object": "realtime.session"}
        return model

    def receive(self, raw: str | bytes, now_ms: int) -> list[Output]:
        """Handle one client message; protocol violations become ``error`` events."""
        event: pydantic.BaseModel | None = None
        try:
            event = parsing.parse_client_event(raw, self._item_for_reference)
            return self._handlers[type(event)](event, now_ms)
        except ProtocolError as error:
            client_event_id = getattr(event, "event_id", None)
            return [error.with_event_id(client_event_id).to_event(self.event_id())]

    def _item_for_reference(self, item_id: str) -> dict[str, Any] | None:
        if item_id not in self.conversation:
            return None
        return dict(
            self.conversation.get(item_id).to_model().model_dump(mode="json", exclude_none=True)
        )

    def error(self, error: ProtocolError) -> list[Output]:
        """An ``error`` event for a problem found outside a client event."""
        return [error.to_event(self.event_id())]

    # -- session ---------------------------------------------------------

    def _apply_turn_config(self) -> None:
        turn = self.config.turn
        self.detector = TurnDetector(turn) if turn else None
        self.buffer.enable_vad(turn is not None)

    def _on_session_update(self, event: SessionUpdateEvent, now_ms: int) -> list[Output]:
        self.config.update(event.session, voice_locked=self.assistant_audio_sent)
        self.buffer.set_format(self.config.input_format)
        self._apply_turn_config()
        self.reset_turn()
        return [
            SessionUpdatedEvent(
                type="session.updated", event_id=self.event_id(), session=self._session_model()
            )
        ]

    def _on_output_clear(self, event: OutputAudioBufferClearEvent, now_ms: int) -> list[Output]:
        if self.playout is not None:
            return [PlayoutCutRequested()]
        raise invalid_request(
            ErrorCode.INVALID_VALUE,
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections; "
            "over WebSocket the client owns playback (use conversation.item.truncate).",
            param="type",
        )

    # -- WebRTC media ----------------------------------------------------

    def media_audio(self, pcm16_24k: bytes, now_ms: int) -> list[Output]:
        """Caller audio from the media track (WebRTC), as an append would bring it."""
        fmt = self.buffer.format
        data = codec.encode(
            codec.resample(pcm16_24k, codec.PROTOCOL_PCM_RATE, codec.format_rate(fmt)), fmt
        )
        return self.vad_frames_ready(self.buffer.append(data))

    def interrupt_for_speech(self, now_ms: int) -> list[Output]:
        """Barge-in; on WebRTC the server also stops its own playout and truncates."""
        outputs = super().interrupt_for_speech(now_ms)
        if self.playout is not None and self.playout.active:
            outputs.append(PlayoutCutRequested())
        return outputs

    def playout_cut(self) -> list[Output]:
        """The track's queue was emptied: truncate the reply to the audio that went out."""
        assert self.playout is not None, "playout_cut is for WebRTC sessions"
        cut, events = self.playout.cut()
        outputs: list[Output] = list(events)
        if cut is not None and cut.item_id in self.conversation:
            record = self.conversation.get(cut.item_id)
            end_ms = min(cut.audio_end_ms, int(record.audio_ms))
            self.conversation.truncate(cut.item_id, cut.content_index, end_ms)
            outputs.append(
                ConversationItemTruncatedEvent(
                    type="conversation.item.truncated",
                    event_id=self.event_id(),
                    item_id=cut.item_id,
                    content_index=cut.content_index,
                    audio_end_ms=end_ms,
                )
            )
        return outputs

    # -- input audio -----------------------------------------------------

    def _on_append(self, event: InputAudioBufferAppendEvent, now_ms: int) -> list[Output]:
        frames = self.buffer.append(decode_append(event.audio, self.buffer.format))
        return self.vad_frames_ready(frames)

    def _on_commit(self, event: InputAudioBufferCommitEvent, now_ms: int) -> list[Output]:
        committed = self.buffer.commit_all()
        self.reset_turn()
        return self.commit_user_audio(self.ids.new(IdKind.ITEM), committed)

    def _on_clear(self, event: InputAudioBufferClearEvent, now_ms: int) -> list[Output]:
        self.buffer.clear()
        self.reset_turn()
        return [
            InputAudioBufferClearedEvent(
                type="input_audio_buffer.cleared", event_id=self.event_id()
            )
        ]

    # -- conversation items ------------------------------------------------

    def _on_item_create(self, event: ConversationItemCreateEvent, now_ms: int) -> list[Output]:
        item = validate_item(event.item)
        item = item.model_copy(deep=True)
        if not item.id:
            item.id = self.ids.new(IdKind.ITEM)
        item.object = "realtime.item"
        item.status = "completed"
        record = ItemRecord(item=item, audio_format=self.buffer.format)
        self.attach_client_audio(record)
        previous = self.conversation.add(record, event.previous_item_id)
        outputs = self.item_added_and_done(record, previous)
        if record.audio:  # a user audio item sent whole: the brain needs its words too
            pcm = codec.to_pcm16(bytes(record.audio), record.audio_format, TRANSCRIBE_RATE)
            outputs.append(TranscriptionRequested(record.id, pcm, TRANSCRIBE_RATE))
        return outputs

    def _on_item_retrieve(self, event: ConversationItemRetrieveEvent, now_ms: int) -> list[Output]:
        record = self.conversation.get(event.item_id, ErrorCode.RETRIEVE_INVALID_ITEM)
        return [
            ConversationItemRetrieved(
                type="conversation.item.retrieved",
                event_id=self.event_id(),
                item=record.to_model(with_audio=True),
            )
        ]

    def _on_item_truncate(self, event: ConversationItemTruncateEvent, now_ms: int) -> list[Output]:
        self.conversation.truncate(event.item_id, event.content_index, event.audio_end_ms)
        return [
            ConversationItemTruncatedEvent(
                type="conversation.item.truncated",
                event_id=self.event_id(),
                item_id=event.item_id,
                content_index=event.content_index,
                audio_end_ms=event.audio_end_ms,
            )
        ]

    def _on_item_delete(self, event: ConversationItemDeleteEvent, now_ms: int) -> list[Output]:
        self.conversation.delete(event.item_id)
        return [
            ConversationItemDeletedEvent(
                type="conversation.item.deleted", event_id=self.event_id(), item_id=event.item_id
            )
        ]

    # -- session lifetime and faults ------------------------------------------

    def expire(self, max_seconds: float, now_ms: int) -> list[Output]:
        """The session cap was reached: ``session_expired`` then close."""
        outputs = self.stop_active_response()
        outputs += self.error(session_expired(max_seconds))
        return [*outputs, CloseRequested(CLOSE_NORMAL, "session_expired")]

    def injected_error(self, error_type: str, code: str, message: str) -> list[Output]:
        """An ``error`` event chosen by fault injection."""
        kind = ErrorType(error_type) if error_type in {t.value for t in ErrorType} else None
        error = ProtocolError(kind or ErrorType.INVALID_REQUEST, code, message)
        error.error_type = kind or ErrorType.INVALID_REQUEST
        event = error.to_event(self.event_id())
        event.error.type = error_type
        return [event]

    def exhaust_rate_limits(self, now_ms: int, reset_seconds: float) -> None:
        """Empty the rate-limit buckets (fault injection)."""
        self.limiter.exhaust(now_ms, reset_seconds)

    def preconfigure(self, session: dict[str, Any]) -> None:
        """Apply a minted secret's session configuration before ``session.created``."""
        from openai.types.realtime import RealtimeSessionCreateRequest

        self.config.update(RealtimeSessionCreateRequest.model_validate(session), voice_locked=False)
        self.buffer.set_format(self.config.input_format)
        self._apply_turn_config()
