"""What the latency instruments can ask the pipeline's parts directly, instead of watching frames.

A stamp taken where it happens is both more exact and cheaper than one read
off the frames going by: a transport knows when it captured each frame of
caller audio and when bot audio started playing, and a speech-to-speech
service knows when it sent each frame to the model. Each is a small protocol;
the file transport and voxpipe's realtime service implement them, and the
latency observer falls back to watching frames for any part that does not.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from pipecat.processors.frame_processor import FrameProcessor

from voxpipe.observability.capture import CaptureLog


class BrainKind(enum.Enum):
    """What the brain takes in and gives out, which decides where a turn is "sent"."""

    SPEECH = "speech"  # a speech-to-speech service: hears the caller's audio, speaks
    TEXT = "text"  # the chained LLM: gets the turn's context, writes text for the TTS


def brain_kind(brain: FrameProcessor) -> BrainKind:
    """SPEECH for pipecat's OpenAI Realtime service and its subclasses, else TEXT."""
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    return BrainKind.SPEECH if isinstance(brain, OpenAIRealtimeLLMService) else BrainKind.TEXT


class CaptureStamps(Protocol):
    """A transport that logs where each caller audio frame sits and when it was captured."""

    @property
    def captures(self) -> CaptureLog:
        """The log, on the observer's clock."""
        ...


class PlaybackReports(Protocol):
    """An output transport that reports when audio really started playing."""

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first audio handed over at or after ``since_ms`` started playing."""
        ...


@runtime_checkable
class SendReports(Protocol):
    """A speech brain that knows when it sent each caller frame to the model."""

    def sent_ms(self, frame_id: int) -> float | None:
        """When frame ``frame_id`` went out, on the observer's clock; None if unknown."""
        ...
