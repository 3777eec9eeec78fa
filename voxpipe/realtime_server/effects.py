"""What goes in and out of the sans-I/O session besides client events.

The session returns an ordered list of :data:`Output`: server events to send
(``openai.types.realtime`` models) interleaved with effects, small commands
for the driver that owns tasks and sockets. Brains report back with
:data:`BrainOutput` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from voxpipe.realtime_server.session_config import Modality
from voxpipe.realtime_server.turn_detection import VadFrame


@dataclass(frozen=True)
class BrainStartRequested:
    """Start producing response ``response_id`` (ask the session for its request)."""

    response_id: str


@dataclass(frozen=True)
class BrainStopRequested:
    """Stop producing response ``response_id``: it was cancelled or ended."""

    response_id: str


@dataclass(frozen=True)
class TranscriptionRequested:
    """Transcribe a user audio item.

    A ``speculative`` request comes when the user pauses, before the turn is
    committed: if the pause becomes the end of the turn, the final request
    has the same ``item_id`` and ``speech_end_ms`` and its transcript can be
    reused, so recognition overlaps the VAD's silence wait.
    """

    item_id: str
    pcm16: bytes
    sample_rate: int
    speech_end_ms: int | None = None
    speculative: bool = False


@dataclass(frozen=True)
class VadScoringRequested:
    """Score these frames for speech and feed the scores back."""

    frames: tuple[VadFrame, ...]


@dataclass(frozen=True)
class CloseRequested:
    """Close the socket with this WebSocket close code."""

    code: int
    reason: str


@dataclass(frozen=True)
class PlayoutCutRequested:
    """WebRTC only: drop the reply audio still queued on the track, then report the cut.

    The driver empties its track's queue and calls the session's
    ``playout_cut``, which truncates the item to the audio that went out.
    """


Effect = (
    BrainStartRequested
    | BrainStopRequested
    | TranscriptionRequested
    | VadScoringRequested
    | CloseRequested
    | PlayoutCutRequested
)
Output = pydantic.BaseModel | Effect


@dataclass(frozen=True)
class TextProduced:
    """A piece of the reply's text (spoken transcript or text output)."""

    text: str


@dataclass(frozen=True)
class AudioProduced:
    """Reply audio: PCM16 mono at 24 kHz."""

    pcm16: bytes


@dataclass(frozen=True)
class FunctionCallProduced:
    """The model calls a function."""

    name: str
    arguments: str
    call_id: str


BrainOutput = TextProduced | AudioProduced | FunctionCallProduced


@dataclass(frozen=True)
class BrainRequest:
    """Everything a brain needs to produce one response."""

    response_id: str
    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...]
    modality: Modality
    max_output_tokens: int | None
    voice: str
    turn_index: int
