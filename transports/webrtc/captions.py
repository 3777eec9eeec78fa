"""What the page shows while a call runs: live captions of both sides, and the bot's moments.

An inline observer of the call's graph that sends the page (over the data
channel, see ``PROTOCOL.md``) each side's utterance so far as it grows —
``{"type": "caption", "role": "caller" | "bot", "text", "final"}`` — and the
events the page acts on: ``interrupted`` (mute what is still arriving of the
cut reply) and ``bot_started_speaking`` (unmute), each with the ``item_id`` of
the reply (the utterance the output is playing), when there is one.

A cut reply never starts speaking again. pipecat's output keeps writing the
chunk it already held when an interruption came, after it said the bot
stopped, so it says the bot *started* speaking again, for the cut reply: that
used to unmute the page, which then played what its buffers still held of the
cut reply (up to 1.4 s seen under load). A start is sent only for a reply
that was not cut; the page also ignores one for a reply it was told was cut.
A barge-in is told once per reply, however many interruption frames carry it
(the caller's VAD and the server's both stop the bot).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TTSStartedFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.processors.observability.inline import InlineObserver

Send = Callable[[dict[str, Any]], None]
_NO_SPACE_BEFORE = tuple(",.!?;:'")
_CUT_KEPT = 64  # the cut replies remembered (a late start comes within a second of its cut)


def _joined(text: str, piece: str) -> str:
    """``piece`` after ``text``, a space between words (pieces may or may not carry one)."""
    if not text or not piece.strip():
        return (text + piece).strip()
    if text[-1].isspace() or piece[0].isspace() or piece.startswith(_NO_SPACE_BEFORE):
        return (text + piece).strip()
    return f"{text} {piece.strip()}"


class PageCaptions(InlineObserver):
    """Sends captions and call events to the page through ``send`` (never blocks)."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (
        TranscriptionFrame,
        InterimTranscriptionFrame,
        TTSTextFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        InterruptionFrame,
        PlaybackMarkerFrame,
        TTSStartedFrame,
    )

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send
        self._bot_text = ""
        self._bot_speaking = False
        self._item: str | None = None  # the reply whose audio is on its way to the output
        self._told_cut = False  # the page was told of a cut since the last start it was told
        self._cut: deque[str] = deque(maxlen=_CUT_KEPT)

    def observe(self, data: FramePushed, first: bool) -> None:
        frame = data.frame
        if isinstance(frame, TranscriptionFrame | InterimTranscriptionFrame):
            final = isinstance(frame, TranscriptionFrame)
            self._caption("caller", frame.text.strip(), final)
        elif isinstance(frame, TTSTextFrame):
            self._bot_text = _joined(self._bot_text, frame.text)
            self._caption("bot", self._bot_text, False)
        elif data.direction is not FrameDirection.DOWNSTREAM:
            return  # a broadcast's upstream twin: told once
        elif isinstance(frame, PlaybackMarkerFrame):
            self._item = frame.utterance_id  # pushed before the reply's first audio
        elif isinstance(frame, TTSStartedFrame) and frame.context_id:
            self._item = frame.context_id  # a chained reply
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_started()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._end_bot_utterance()
        elif isinstance(frame, InterruptionFrame):
            self._interrupted()

    def _bot_started(self) -> None:
        if self._item is not None and self._item in self._cut:
            return  # the chunk the output held at the cut: the cut reply does not speak again
        self._bot_speaking, self._told_cut = True, False
        self._send(self._event("bot_started_speaking"))

    def _interrupted(self) -> None:
        if self._told_cut or not (self._bot_speaking or self._bot_text):
            return  # told already (another frame of the same barge-in), or nothing was playing
        # The bot was cut: the page mutes what still arrives of it, and says where it stopped.
        self._told_cut = True
        if self._item is not None:
            self._cut.append(self._item)
        self._send(self._event("interrupted"))
        self._send({"type": "playout_request"})
        self._end_bot_utterance()

    def _event(self, name: str) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "event", "name": name}
        if self._item is not None:
            event["item_id"] = self._item
        return event

    def _end_bot_utterance(self) -> None:
        if self._bot_text:
            self._caption("bot", self._bot_text, True)
            self._bot_text = ""

    def _caption(self, role: str, text: str, final: bool) -> None:
        if text:
            self._send({"type": "caption", "role": role, "text": text, "final": final})
