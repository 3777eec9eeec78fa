"""The server-side conversation: ordered items, their audio, and truncation.

Items are the ``openai`` conversation item models; audio is kept beside them
as raw bytes in the format it arrived or left in, so an item's audio length
(what ``conversation.item.truncate`` is checked against) is exact.

Memory is bounded (:class:`ConversationLimits`): only the newest minute of
audio is kept as bytes; an older item keeps its audio's length (truncate is
still checked against it, usage still counts it) and its transcript, and
``conversation.item.retrieve`` returns it without audio. Past 4,096 items or
2 MB of text the oldest items are forgotten: by then they are long out of the
model's 32k-token context (see :mod:`voxpipe.realtime_server.context_window`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import pydantic
from openai.types.realtime import (
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
)

from voxpipe.audio import AudioFormat, bytes_to_ms, ms_to_bytes
from voxpipe.realtime_server.protocol_errors import (
    ErrorCode,
    invalid_request,
    invalid_value,
)

Item = (
    RealtimeConversationItemSystemMessage
    | RealtimeConversationItemUserMessage
    | RealtimeConversationItemAssistantMessage
    | RealtimeConversationItemFunctionCall
    | RealtimeConversationItemFunctionCallOutput
)
SUPPORTED_ITEMS = (
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
)


@dataclass(frozen=True)
class ConversationLimits:
    """What one session's conversation holds in memory (not what the model sees)."""

    audio_kept_ms: int = 60_000
    max_items: int = 4_096
    text_kept_chars: int = 2_000_000


@dataclass
class TranscriptSegment:
    """Transcript text and where in the item's audio it starts being spoken."""

    audio_start_ms: int
    text: str


@dataclass
class ItemRecord:
    """One conversation item and what the server knows beside it."""

    item: Item
    audio: bytearray = field(default_factory=bytearray)
    audio_format: AudioFormat = AudioFormat.PCM16_24K
    segments: list[TranscriptSegment] = field(default_factory=list)
    version: int = 0
    # Audio whose bytes were let go under the session's budget; its length still counts.
    audio_released_bytes: int = 0

    @property
    def id(self) -> str:
        """The item id."""
        return str(self.item.id)

    @property
    def audio_ms(self) -> int:
        """Length of the item's audio in milliseconds (kept or released)."""
        return bytes_to_ms(len(self.audio) + self.audio_released_bytes, self.audio_format)

    @property
    def has_audio(self) -> bool:
        """Whether the item has audio, kept or released."""
        return bool(self.audio) or self.audio_released_bytes > 0

    def release_audio(self) -> None:
        """Let the audio bytes go, keeping their length."""
        self.audio_released_bytes += len(self.audio)
        self.audio = bytearray()

    def cut_audio(self, audio_end_ms: int) -> None:
        """Drop the audio past ``audio_end_ms``, kept or released."""
        end = ms_to_bytes(audio_end_ms, self.audio_format)
        if self.audio_released_bytes:
            self.audio_released_bytes = min(self.audio_released_bytes, end)
        else:
            del self.audio[end:]

    @property
    def transcript(self) -> str:
        """The whole transcript kept for the item."""
        return "".join(segment.text for segment in self.segments)

    def to_model(self, *, with_audio: bool = False) -> Item:
        """The item as sent to clients; audio is included only on retrieve."""
        item = self.item.model_copy(deep=True)
        if isinstance(item, RealtimeConversationItemAssistantMessage) and item.content:
            part = item.content[0]
            if part.type == "output_audio":
                part.transcript = self.transcript
                part.audio = base64.b64encode(self.audio).decode() if with_audio else None
            elif part.type == "output_text":
                part.text = self.transcript
        if isinstance(item, RealtimeConversationItemUserMessage) and with_audio and self.audio:
            for user_part in item.content:
                if user_part.type == "input_audio":
                    user_part.audio = base64.b64encode(self.audio).decode()
        return item


def validate_item(raw: pydantic.BaseModel, param: str = "item") -> Item:
    """The supported item types only (no MCP items: this server runs no MCP)."""
    if not isinstance(raw, SUPPORTED_ITEMS):
        kind = getattr(raw, "type", type(raw).__name__)
        raise invalid_value(f"{param}.type", f"Item type '{kind}' is not supported by this server.")
    if (
        isinstance(
            raw, RealtimeConversationItemAssistantMessage | RealtimeConversationItemUserMessage
        )
        and not raw.content
    ):
        raise invalid_value(f"{param}.content", "A message item needs at least one content part.")
    return raw


class Conversation:
    """The default conversation of one session."""

    def __init__(self, limits: ConversationLimits | None = None) -> None:
        self.limits = limits or ConversationLimits()
        self._order: list[str] = []
        self._records: dict[str, ItemRecord] = {}
        self.forgotten = 0

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._records

    def __len__(self) -> int:
        return len(self._order)

    @property
    def last_id(self) -> str | None:
        """The id of the newest item."""
        return self._order[-1] if self._order else None

    def records(self) -> list[ItemRecord]:
        """Every item, oldest first."""
        return [self._records[item_id] for item_id in self._order]

    def add(self, record: ItemRecord, previous_item_id: str | None = None) -> str | None:
        """Insert after ``previous_item_id`` (``"root"``: first; ``None``: last)."""
        if record.id in self._records:
            raise invalid_request(
                ErrorCode.DUPLICATE_ITEM_ID,
                f"Item with id '{record.id}' already exists in the conversation.",
                param="item.id",
            )
        if previous_item_id is None:
            position = len(self._order)
        elif previous_item_id == "root":
            position = 0
        elif previous_item_id in self._records:
            position = self._order.index(previous_item_id) + 1
        else:
            raise invalid_value(
                "previous_item_id", f"Previous item with id '{previous_item_id}' does not exist."
            )
        self._order.insert(position, record.id)
        self._records[record.id] = record
        previous = self._order[position - 1] if position > 0 else None
        self.enforce_limits(keep=record.id)
        return previous

    def kept_audio_bytes(self) -> int:
        """Audio bytes held by every item (what the audio budget bounds)."""
        return sum(len(record.audio) for record in self._records.values())

    def enforce_limits(self, keep: str | None = None) -> None:
        """Release old audio and forget old items past :class:`ConversationLimits`.

        Newest items keep their audio first; the newest item (and ``keep``) is
        never touched, so an answer in progress can always be truncated exactly.
        """
        protected = {keep, self.last_id}
        budget = self.limits.audio_kept_ms
        for item_id in reversed(self._order):
            record = self._records[item_id]
            kept_ms = bytes_to_ms(len(record.audio), record.audio_format)
            if record.audio and item_id not in protected and kept_ms > budget:
                record.release_audio()  # and every older item's: newest audio is kept first
                kept_ms = budget = 0
            budget -= kept_ms
        text = sum(len(item_text(r)) + len(call_text(r.item)) for r in self._records.values())
        while (
            self._order
            and self._order[0] not in protected
            and (len(self._order) > self.limits.max_items or text > self.limits.text_kept_chars)
        ):
            oldest = self._records.pop(self._order.pop(0))
            text -= len(item_text(oldest)) + len(call_text(oldest.item))
            self.forgotten += 1

    def get(self, item_id: str, code: ErrorCode = ErrorCode.RETRIEVE_INVALID_ITEM) -> ItemRecord:
        """The item, or an error with ``code`` naming the unknown id."""
        record = self._records.get(item_id)
        if record is None:
            raise invalid_request(
                code,
                f"Item with item_id '{item_id}' not found in the conversation.",
                param="item_id",
            )
        return record

    def delete(self, item_id: str) -> None:
        """Remove an item."""
        self.get(item_id, ErrorCode.DELETE_INVALID_ITEM)
        self._order.remove(item_id)
        del self._records[item_id]

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> ItemRecord:
        """Cut an assistant audio item at ``audio_end_ms``; text past the cut is dropped."""
        record = self.get(item_id, ErrorCode.TRUNCATE_INVALID_ITEM)
        item = record.item
        is_audio = isinstance(item, RealtimeConversationItemAssistantMessage) and any(
            part.type == "output_audio" for part in item.content
        )
        if not is_audio:
            raise invalid_value(
                "item_id",
                f"Only assistant messages with audio can be truncated; '{item_id}' is not.",
            )
        if content_index != 0:
            raise invalid_value("content_index", "Only content_index 0 can be truncated.")
        if audio_end_ms < 0:
            raise invalid_value("audio_end_ms", "audio_end_ms must not be negative.")
        if audio_end_ms > record.audio_ms:
            raise invalid_value(
                "audio_end_ms",
                f"Audio content of {record.audio_ms}ms is already shorter than {audio_end_ms}ms",
            )
        spoken_ms = record.audio_ms
        record.cut_audio(audio_end_ms)
        record.segments = cut_segments(record.segments, audio_end_ms, spoken_ms)
        record.version += 1
        return record


def cut_segments(
    segments: list[TranscriptSegment], audio_end_ms: int, spoken_ms: int
) -> list[TranscriptSegment]:
    """The transcript heard before ``audio_end_ms`` of audio ``spoken_ms`` long.

    A segment the cut falls inside keeps the words whose audio had begun (a
    brain that sends a sentence's text with its audio, as the local engines do,
    would otherwise keep a whole sentence of which the caller heard a word),
    its words taken as evenly spread over its audio; a word-long segment is kept
    once it began, as before.
    """
    kept = [s for s in segments if s.audio_start_ms < audio_end_ms]
    if not kept:
        return kept
    last = kept[-1]
    following = segments[len(kept)] if len(kept) < len(segments) else None
    end_ms = following.audio_start_ms if following is not None else spoken_ms
    if end_ms <= audio_end_ms or end_ms <= last.audio_start_ms:
        return kept  # the cut is past this segment's audio (or it has none to share)
    words = last.text.split()
    share = (audio_end_ms - last.audio_start_ms) / (end_ms - last.audio_start_ms)
    heard = " ".join(words[: math.ceil(len(words) * share)])
    return [*kept[:-1], TranscriptSegment(last.audio_start_ms, heard + " " if heard else "")]


def call_text(item: Any) -> str:
    """The text of a function call or its output (empty for messages)."""
    if isinstance(item, RealtimeConversationItemFunctionCall):
        return item.name + item.arguments
    if isinstance(item, RealtimeConversationItemFunctionCallOutput):
        return item.output
    return ""


def item_text(record: ItemRecord) -> str:
    """The text a language model sees for a message item."""
    item = record.item
    if isinstance(item, RealtimeConversationItemAssistantMessage):
        spoken = record.transcript
        return spoken or " ".join(p.text or p.transcript or "" for p in item.content).strip()
    if isinstance(
        item, RealtimeConversationItemUserMessage | RealtimeConversationItemSystemMessage
    ):
        parts: list[Any] = list(item.content)
        texts = [getattr(p, "text", None) or getattr(p, "transcript", None) or "" for p in parts]
        return " ".join(t for t in texts if t).strip()
    return ""
