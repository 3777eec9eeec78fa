"""voxpipe's own pipecat frames."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import DataFrame, InputAudioRawFrame, SystemFrame, TTSAudioRawFrame

from voxpipe.audio import AudioFormat
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


@dataclass
class SlotFallbackFrame(SystemFrame):
    """Carries one :data:`~voxpipe.slot_fallback.SlotEvent` (a handoff, a give-up) downstream.

    A chained slot's fallback service pushes one per event, so the timeline and
    the metrics record it without holding the service.
    """

    event: Any = None


@dataclass
class G711InputAudioFrame(InputAudioRawFrame):
    """Caller audio decoded to PCM for the pipeline, with the G.711 bytes it came as.

    A phone stream's caller arrives as G.711 at 8 kHz, which the OpenAI
    Realtime protocol (and voxpipe's server) take as they are (``audio/pcmu``,
    ``audio/pcma``). Every processor sees ordinary PCM in ``audio``; a brain in
    the same law sends ``g711`` unchanged instead of transcoding the PCM back.
    A processor that changes the audio (the echo guard silencing echo) assigns
    ``audio`` anew, and then :meth:`g711_for` says the bytes no longer hold.
    """

    g711: bytes = field(default=b"", repr=False)
    g711_format: AudioFormat = AudioFormat.G711_ULAW
    _decoded: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[no-untyped-call]
        self._decoded = self.audio

    def g711_for(self, fmt: AudioFormat) -> bytes | None:
        """The original G.711 bytes if they are in ``fmt`` and still what ``audio`` holds."""
        if fmt is not self.g711_format or not self.g711 or self.audio is not self._decoded:
            return None
        return self.g711


@dataclass
class G711OutputAudioFrame(TTSAudioRawFrame):
    """The bot's G.711 as the brain sent it: PCM at 8 kHz in ``audio``, the bytes in ``g711``.

    pipecat's output transport chunks ``audio`` (the chunks it makes carry no
    ``g711``), so a phone output that speaks the same law takes the bytes in
    order from what these frames brought and sends them unchanged; see
    :class:`~voxpipe.telephony.passthrough.G711Passthrough`.
    """

    g711: bytes = field(default=b"", repr=False)
    g711_format: AudioFormat = AudioFormat.G711_ULAW
