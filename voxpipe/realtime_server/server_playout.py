"""What a WebRTC session has played of each reply: on WebRTC the server plays, so it truncates.

Over a WebSocket the client owns playback and tells the server where a reply
was cut (``conversation.item.truncate``). Over WebRTC the server sends the
reply's audio on the media track itself, so it knows what went out: on a
barge-in it clears what is still queued and truncates the item to what was
sent, and it tells the client when its output buffer started, stopped and was
cleared (``output_audio_buffer.*``), as OpenAI does. This ledger holds that
knowledge; the driver reports what the track queued and sent, and time never
enters (positions are audio milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from openai.types.realtime.realtime_server_event import (
    OutputAudioBufferCleared,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
)

from voxpipe.realtime_server.ids import IdFactory, IdKind


@dataclass(frozen=True)
class PlayoutCut:
    """Where a reply's audio was cut: the item to truncate, at the audio that went out."""

    response_id: str
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass
class _Playing:
    response_id: str
    item_id: str
    content_index: int
    queued_ms: float = 0.0
    sent_ms: float = 0.0
    done: bool = False  # the response has ended: no more of its audio will come


class ServerPlayout:
    """The reply audio a WebRTC session has queued on its track and sent, per item."""

    def __init__(self, ids: IdFactory) -> None:
        self._ids = ids
        self._playing: _Playing | None = None
        self._sent: dict[str, float] = {}  # item id -> audio ms sent, for finished items too

    @property
    def active(self) -> bool:
        """Whether reply audio is queued or playing."""
        return self._playing is not None

    def sent_ms(self, item_id: str) -> float:
        """Audio of ``item_id`` sent on the track so far."""
        return self._sent.get(item_id, 0.0)

    def queued(
        self, response_id: str, item_id: str, content_index: int, ms: float
    ) -> list[OutputAudioBufferStarted | OutputAudioBufferStopped]:
        """``ms`` of a reply's audio went onto the track's queue.

        Returns ``output_audio_buffer.started`` for a response's first audio
        (after ``stopped`` for one still draining, which the new one replaces).
        """
        events: list[OutputAudioBufferStarted | OutputAudioBufferStopped] = []
        playing = self._playing
        if playing is None or playing.response_id != response_id:
            if playing is not None:
                events.append(self._stopped(playing.response_id))
            playing = self._playing = _Playing(response_id, item_id, content_index)
            events.append(
                OutputAudioBufferStarted(
                    type="output_audio_buffer.started",
                    event_id=self._ids.new(IdKind.EVENT),
                    response_id=response_id,
                )
            )
        elif playing.item_id != item_id:
            playing.item_id, playing.content_index = item_id, content_index
            playing.queued_ms = playing.sent_ms = 0.0
        playing.queued_ms += ms
        return events

    def sent(self, item_id: str, ms: float) -> None:
        """The track sent ``ms`` of ``item_id``'s audio."""
        self._sent[item_id] = self._sent.get(item_id, 0.0) + ms
        if self._playing is not None and self._playing.item_id == item_id:
            self._playing.sent_ms += ms

    def response_done(self, response_id: str) -> list[OutputAudioBufferStopped]:
        """The response ended: ``stopped`` now if its audio already drained, else once it does."""
        playing = self._playing
        if playing is None or playing.response_id != response_id:
            return []
        playing.done = True
        return self.drained() if playing.sent_ms >= playing.queued_ms else []

    def drained(self) -> list[OutputAudioBufferStopped]:
        """The track's queue ran empty: ``stopped`` if the response is over."""
        playing = self._playing
        if playing is None or not playing.done:
            return []
        self._playing = None
        return [self._stopped(playing.response_id)]

    def cut(self) -> tuple[PlayoutCut | None, list[OutputAudioBufferCleared]]:
        """Drop what is queued (barge-in or ``output_audio_buffer.clear``).

        Returns the cut when a reply's audio was still to play (the item to
        truncate, at what was sent), and ``output_audio_buffer.cleared``.
        """
        playing, self._playing = self._playing, None
        if playing is None:
            return None, []
        cleared = OutputAudioBufferCleared(
            type="output_audio_buffer.cleared",
            event_id=self._ids.new(IdKind.EVENT),
            response_id=playing.response_id,
        )
        if playing.sent_ms >= playing.queued_ms:
            return None, [cleared]  # all of it went out: nothing unheard to cut
        cut = PlayoutCut(
            playing.response_id,
            playing.item_id,
            playing.content_index,
            int(self._sent.get(playing.item_id, playing.sent_ms)),
        )
        return cut, [cleared]

    def _stopped(self, response_id: str) -> OutputAudioBufferStopped:
        return OutputAudioBufferStopped(
            type="output_audio_buffer.stopped",
            event_id=self._ids.new(IdKind.EVENT),
            response_id=response_id,
        )
