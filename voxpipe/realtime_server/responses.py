"""One response's life: the GA event sequence from ``response.created`` to ``response.done``.

A :class:`ResponseRun` turns brain output into protocol events: the
assistant message item opens on the first text or audio, function calls get
items of their own, and :meth:`ResponseRun.finish` closes whatever is open
and reports the final status, reason and usage.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable
from typing import Any

import pydantic
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeResponse,
    RealtimeResponseUsage,
    ResponseAudioDeltaEvent,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from openai.types.realtime import response_content_part_added_event as part_added
from openai.types.realtime import response_content_part_done_event as part_done
from openai.types.realtime.realtime_conversation_item_assistant_message import Content
from openai.types.realtime.realtime_response_status import Error, RealtimeResponseStatus

from voxpipe.audio import AudioFormat
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.conversation import Conversation, ItemRecord, TranscriptSegment
from voxpipe.realtime_server.ids import IdFactory, IdKind
from voxpipe.realtime_server.session_config import Modality
from voxpipe.realtime_server.usage import output_audio_tokens, text_tokens


class ResponseStatus(enum.Enum):
    """Final status of a response."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


class StatusReason(enum.Enum):
    """Why a response did not complete."""

    TURN_DETECTED = "turn_detected"
    CLIENT_CANCELLED = "client_cancelled"
    MAX_OUTPUT_TOKENS = "max_output_tokens"
    CONTENT_FILTER = "content_filter"


class ResponseRun:
    """The state and event builder of one in-progress response."""

    def __init__(
        self,
        *,
        response_id: str,
        ids: IdFactory,
        conversation: Conversation | None,
        modality: Modality,
        output_format: AudioFormat,
        voice: str,
        max_output_tokens: int | None,
        metadata: dict[str, str] | None,
    ) -> None:
        self.id = response_id
        self._ids = ids
        self._conversation = conversation
        self.modality = modality
        self.output_format = output_format
        self.voice = voice
        self.max_output_tokens = max_output_tokens
        self.metadata = metadata
        self.outputs: list[ItemRecord] = []
        self._open: ItemRecord | None = None
        self.output_text = ""
        self.output_audio_ms = 0

    def _event_id(self) -> str:
        return self._ids.new(IdKind.EVENT)

    def _where(self, record: ItemRecord) -> dict[str, Any]:
        return {
            "event_id": self._event_id(),
            "response_id": self.id,
            "item_id": record.id,
            "output_index": self.outputs.index(record),
        }

    def response_model(
        self,
        status: str,
        details: RealtimeResponseStatus | None = None,
        usage: RealtimeResponseUsage | None = None,
    ) -> RealtimeResponse:
        """The ``response`` object of ``response.created``/``response.done``."""
        return RealtimeResponse.model_validate(
            {
                "id": self.id,
                "object": "realtime.response",
                "status": status,
                "status_details": details,
                "output": [r.to_model() for r in self.outputs],
                "conversation_id": "conv_default" if self._conversation is not None else None,
                "output_modalities": [self.modality.value],
                "max_output_tokens": self.max_output_tokens or "inf",
                "metadata": self.metadata,
                "usage": usage,
                "audio": {
                    "output": {"format": {"type": self.output_format.value}, "voice": self.voice}
                },
            }
        )

    def created(self) -> ResponseCreatedEvent:
        """``response.created``."""
        return ResponseCreatedEvent(
            type="response.created",
            event_id=self._event_id(),
            response=self.response_model("in_progress"),
        )

    @property
    def output_tokens(self) -> int:
        """Output tokens produced so far."""
        return text_tokens(self.output_text) + output_audio_tokens(self.output_audio_ms)

    @property
    def over_budget(self) -> bool:
        """Whether the response has used up ``max_output_tokens``."""
        return self.max_output_tokens is not None and self.output_tokens >= self.max_output_tokens

    def _add_item(self, record: ItemRecord) -> list[pydantic.BaseModel]:
        self.outputs.append(record)
        events: list[pydantic.BaseModel] = [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                event_id=self._event_id(),
                response_id=self.id,
                output_index=len(self.outputs) - 1,
                item=record.to_model(),
            )
        ]
        if self._conversation is not None:
            previous = self._conversation.add(record)
            events.append(
                ConversationItemAdded(
                    type="conversation.item.added",
                    event_id=self._event_id(),
                    previous_item_id=previous,
                    item=record.to_model(),
                )
            )
        return events

    def _open_message(self) -> list[pydantic.BaseModel]:
        if self._open is not None:
            return []
        kind = "output_audio" if self.modality is Modality.AUDIO else "output_text"
        item = RealtimeConversationItemAssistantMessage(
            id=self._ids.new(IdKind.ITEM),
            object="realtime.item",
            type="message",
            role="assistant",
            status="in_progress",
            content=[Content.model_validate({"type": kind})],
        )
        self._open = ItemRecord(item=item, audio_format=self.output_format)
        events = self._add_item(self._open)
        part_kind = "audio" if self.modality is Modality.AUDIO else "text"
        events.append(
            ResponseContentPartAddedEvent(
                type="response.content_part.added",
                content_index=0,
                part=part_added.Part.model_validate(
                    {"type": part_kind, ("transcript" if part_kind == "audio" else "text"): ""}
                ),
                **self._where(self._open),
            )
        )
        return events

    def on_text(self, text: str) -> list[pydantic.BaseModel]:
        """Reply text: a transcript delta (audio) or a text delta (text)."""
        if not text:
            return []
        events = self._open_message()
        record = self._open
        assert record is not None
        record.segments.append(TranscriptSegment(audio_start_ms=record.audio_ms, text=text))
        self.output_text += text
        cls = (
            ResponseAudioTranscriptDeltaEvent
            if self.modality is Modality.AUDIO
            else ResponseTextDeltaEvent
        )
        kind = (
            "response.output_audio_transcript.delta"
            if self.modality is Modality.AUDIO
            else "response.output_text.delta"
        )
        events.append(cls(type=kind, content_index=0, delta=text, **self._where(record)))  # type: ignore[arg-type]
        return events

    def on_audio(self, pcm16_24k: bytes) -> list[pydantic.BaseModel]:
        """Reply audio; dropped in a text-only response."""
        if self.modality is not Modality.AUDIO or not pcm16_24k:
            return []
        events = self._open_message()
        record = self._open
        assert record is not None
        encoded = codec.from_pcm16_24k(pcm16_24k, self.output_format)
        before = record.audio_ms
        record.audio.extend(encoded)
        self.output_audio_ms += record.audio_ms - before
        events.append(
            ResponseAudioDeltaEvent(
                type="response.output_audio.delta",
                content_index=0,
                delta=base64.b64encode(encoded).decode(),
                **self._where(record),
            )
        )
        return events

    def on_function_call(self, name: str, arguments: str, call_id: str) -> list[pydantic.BaseModel]:
        """A function call item with its argument events."""
        events = self._close_message(status="completed")
        item = RealtimeConversationItemFunctionCall(
            id=self._ids.new(IdKind.ITEM),
            object="realtime.item",
            type="function_call",
            status="in_progress",
            name=name,
            call_id=call_id,
            arguments="",
        )
        record = ItemRecord(item=item)
        events += self._add_item(record)
        self.output_text += name + arguments
        events.append(
            ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                call_id=call_id,
                delta=arguments,
                **self._where(record),
            )
        )
        events.append(
            ResponseFunctionCallArgumentsDoneEvent(
                type="response.function_call_arguments.done",
                call_id=call_id,
                name=name,
                arguments=arguments,
                **self._where(record),
            )
        )
        item.arguments = arguments
        events += self._item_done(record, "completed")
        return events

    def _item_done(self, record: ItemRecord, status: str) -> list[pydantic.BaseModel]:
        record.item.status = status  # type: ignore[assignment]
        where = self._where(record)
        events: list[pydantic.BaseModel] = [
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                event_id=where["event_id"],
                response_id=self.id,
                output_index=where["output_index"],
                item=record.to_model(),
            )
        ]
        if self._conversation is not None and record.id in self._conversation:
            events.append(
                ConversationItemDone(
                    type="conversation.item.done",
                    event_id=self._event_id(),
                    item=record.to_model(),
                )
            )
        return events

    def _close_message(self, status: str) -> list[pydantic.BaseModel]:
        record, self._open = self._open, None
        if record is None:
            return []
        text = record.transcript
        events: list[pydantic.BaseModel] = []
        if self.modality is Modality.AUDIO:
            events.append(
                ResponseAudioDoneEvent(
                    type="response.output_audio.done", content_index=0, **self._where(record)
                )
            )
            events.append(
                ResponseAudioTranscriptDoneEvent(
                    type="response.output_audio_transcript.done",
                    content_index=0,
                    transcript=text,
                    **self._where(record),
                )
            )
            part: dict[str, Any] = {"type": "audio", "transcript": text}
        else:
            events.append(
                ResponseTextDoneEvent(
                    type="response.output_text.done",
                    content_index=0,
                    text=text,
                    **self._where(record),
                )
            )
            part = {"type": "text", "text": text}
        events.append(
            ResponseContentPartDoneEvent(
                type="response.content_part.done",
                content_index=0,
                part=part_done.Part(**part),
                **self._where(record),
            )
        )
        return events + self._item_done(record, status)

    def finish(
        self,
        status: ResponseStatus,
        usage: Callable[[], RealtimeResponseUsage],
        *,
        reason: StatusReason | None = None,
        error: Error | None = None,
    ) -> list[pydantic.BaseModel]:
        """Close open items and emit ``response.done``."""
        item_status = "completed" if status is ResponseStatus.COMPLETED else "incomplete"
        events = self._close_message(item_status)
        details = RealtimeResponseStatus(
            type=status.value,
            reason=reason.value if reason else None,
            error=error,
        )
        events.append(
            ResponseDoneEvent(
                type="response.done",
                event_id=self._event_id(),
                response=self.response_model(status.value, details, usage()),
            )
        )
        return events
