"""voxpipe's own pipecat frames."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import DataFrame, SystemFrame

from voxpipe.guardrails.debounce import CheckFailure


@dataclass
class PlaybackMarkerFrame(DataFrame):
    """Marks where an utterance's audio begins in the output stream.

    Output transports queue data frames in order with audio, so this frame
    reaches the transport exactly before the utterance's first chunk; the
    transport's playback clock then attributes what follows to
    ``utterance_id`` (the assistant item id on the realtime path).
    """

    utterance_id: str = ""


class GuardrailStage(enum.Enum):
    """Which side of the conversation a guardrail watched."""

    OUTPUT = "output"  # the assistant's words (the guardrail tap)
    INPUT = "input"  # the caller's transcript (the input filter)


@dataclass
class GuardrailTrippedFrame(SystemFrame):
    """A guardrail stopped a response or refused a turn; observers record it.

    ``span`` is the offending text (``start``/``end`` index the response text
    checked); ``failure`` is set when the trip came from a failed check under
    fail-closed rather than from a policy match.
    """

    stage: GuardrailStage = GuardrailStage.OUTPUT
    policy: str = ""
    rule: str = ""
    span: str = ""
    start: int | None = None
    end: int | None = None
    failure: CheckFailure | None = None
    response_id: str | None = None


@dataclass
class RealtimeCallEventFrame(SystemFrame):
    """Carries one :data:`~voxpipe.call.events.CallEvent` downstream, stamped with the call clock.

    The realtime service pushes one per event it publishes, so an observer
    (the call timeline, the metrics) records it without holding the service.
    """

    event: Any = None
    at_ms: float = 0.0
