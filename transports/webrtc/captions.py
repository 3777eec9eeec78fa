"""What the page shows while a call runs: live captions of both sides, and the bot's moments.

An inline observer of the call's graph that sends the page (over the data
channel, see ``PROTOCOL.md``) each side's utterance so far as it grows —
``{"type": "caption", "role": "caller" | "bot", "text", "final"}`` — and the
events the page acts on: ``interrupted`` (mute what is still arriving of the
cut reply) and ``bot_started_speaking`` (unmute).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.processors.observability.inline import InlineObserver

Send = Callable[[dict[str, Any]], None]
_NO_SPACE_BEFORE = tuple(",.!?;:'")


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
    )

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send
        self._bot_text = ""
        self._bot_speaking = False

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
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._send({"type": "event", "name": "bot_started_speaking"})
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._end_bot_utterance()
        elif isinstance(frame, InterruptionFrame) and (self._bot_speaking or self._bot_text):
            # The bot was cut: the page mutes what still arrives of it, and says where it stopped.
            self._send({"type": "event", "name": "interrupted"})
            self._send({"type": "playout_request"})
            self._end_bot_utterance()

    def _end_bot_utterance(self) -> None:
        if self._bot_text:
            self._caption("bot", self._bot_text, True)
            self._bot_text = ""

    def _caption(self, role: str, text: str, final: bool) -> None:
        if text:
            self._send({"type": "caption", "role": role, "text": text, "final": final})
