"""Playback tracker: per assistant item, audio received versus audio heard.

The truncate point of an interrupted assistant item must be what the caller
actually heard, taken from the output transport's clock, never a wall-clock
guess; and it must never exceed the audio the server sent, or the server
answers "Audio content of Xms is already shorter than Yms". This tracker
keeps both numbers per item and plans the ``conversation.item.truncate``.

Inputs: :class:`AudioReceived` (from ``response.output_audio.delta``),
:class:`PlaybackAdvanced` and :class:`PlaybackFinished` (from the output
transport). Output: :class:`TruncationPlanned`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from voxpipe.audio import AudioFormat, bytes_to_ms
from voxpipe.errors import LocalProtocolError


@dataclasses.dataclass(frozen=True)
class AudioReceived:
    """``n_bytes`` of assistant audio for ``item_id`` arrived from the provider."""

    item_id: str
    n_bytes: int


@dataclasses.dataclass(frozen=True)
class PlaybackAdvanced:
    """The output transport has played ``played_ms`` of ``item_id`` (a position, not a delta)."""

    item_id: str
    played_ms: int


@dataclasses.dataclass(frozen=True)
class PlaybackFinished:
    """The output transport stopped playing ``item_id`` at ``played_ms``."""

    item_id: str
    played_ms: int
    interrupted: bool


PlaybackInput = AudioReceived | PlaybackAdvanced | PlaybackFinished


@dataclasses.dataclass(frozen=True)
class TruncationPlanned:
    """Send ``conversation.item.truncate`` with these values.

    ``audio_end_ms`` is ``played_ms`` clamped to ``received_ms``; the other two
    are kept so the driver can log the truncation error it avoided.
    """

    item_id: str
    content_index: int
    audio_end_ms: int
    played_ms: int
    received_ms: int


@dataclasses.dataclass
class _Item:
    received_bytes: int = 0
    played_ms: int = 0
    finished: bool = False
    truncated: bool = False


class PlaybackTracker:
    """Received and played audio per assistant item, for one call.

    ``max_items`` bounds memory on long calls: once exceeded, the oldest
    items are forgotten (they can no longer be truncated, and need not be).
    """

    def __init__(self, fmt: AudioFormat = AudioFormat.PCM16_24K, *, max_items: int = 64) -> None:
        self._fmt = fmt
        self._max_items = max_items
        self._items: OrderedDict[str, _Item] = OrderedDict()

    def handle(self, event: PlaybackInput) -> bool:
        """Apply one input; False when it was dropped (audio of a truncated item)."""
        if isinstance(event, AudioReceived):
            return self._on_audio(event)
        item = self._item(event.item_id, create=True)
        # A transport clock never runs backwards; a late, smaller report is stale.
        item.played_ms = max(item.played_ms, event.played_ms)
        if isinstance(event, PlaybackFinished):
            item.finished = True
        return True

    def accepts_audio(self, item_id: str) -> bool:
        """False once ``item_id`` was truncated: its late audio must not be played."""
        item = self._items.get(item_id)
        return item is None or not item.truncated

    def received_ms(self, item_id: str) -> int:
        """Whole milliseconds of audio received for ``item_id``."""
        return bytes_to_ms(self._item(item_id).received_bytes, self._fmt)

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` the caller heard, as the transport reported."""
        return self._item(item_id).played_ms

    def unplayed_ms(self, item_id: str) -> int:
        """Audio received for ``item_id`` but not (yet) heard."""
        return max(0, self.received_ms(item_id) - self.played_ms(item_id))

    def truncate_point(self, item_id: str) -> int:
        """The ``audio_end_ms`` to send: heard audio, never more than received."""
        return min(self.played_ms(item_id), self.received_ms(item_id))

    def plan_truncation(self, item_id: str) -> TruncationPlanned | None:
        """Plan the truncate for an interrupted item and stop accepting its audio.

        Returns None when nothing needs truncating: the item was fully heard,
        or was already truncated.
        """
        item = self._item(item_id)
        if item.truncated:
            return None
        item.truncated = True
        received = self.received_ms(item_id)
        if item.finished and item.played_ms >= received:
            return None
        return TruncationPlanned(
            item_id=item_id,
            content_index=0,  # the protocol only truncates the first (audio) part
            audio_end_ms=min(item.played_ms, received),
            played_ms=item.played_ms,
            received_ms=received,
        )

    def has_item(self, item_id: str) -> bool:
        """Whether the tracker holds a record for ``item_id``."""
        return item_id in self._items

    def latest_item(self) -> str | None:
        """The most recently started assistant item, the one an interruption cuts."""
        return next(reversed(self._items), None)

    def forget(self, item_id: str) -> None:
        """Drop an item (deleted from the conversation, or the session rolled over)."""
        self._items.pop(item_id, None)

    def _on_audio(self, event: AudioReceived) -> bool:
        if event.n_bytes < 0:
            raise LocalProtocolError(f"negative audio size for {event.item_id}: {event.n_bytes}")
        item = self._item(event.item_id, create=True)
        if item.truncated:
            return False
        item.received_bytes += event.n_bytes
        return True

    def _item(self, item_id: str, *, create: bool = False) -> _Item:
        item = self._items.get(item_id)
        if item is not None:
            return item
        if not create:
            raise LocalProtocolError(
                f"no playback record for item {item_id}",
                hint="truncate only assistant items whose audio this call received",
            )
        item = self._items[item_id] = _Item()
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)
        return item
