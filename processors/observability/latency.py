"""Stamps each turn's latency boundaries from the frames a pipeline really pushes.

Every stamp is on one clock, the ``now_ms`` given (normally the transport's),
and comes from something the pipeline did, never from a guess:

=====================  ===================================================================
boundary               where it comes from
=====================  ===================================================================
speech_end             local VAD: its stop frame; the audio that triggered it, ``stop_secs``
                       earlier, at that audio's capture stamp (the transport's
                       ``capture_ms`` when it has one, else when the input pushed it).
                       Server VAD (realtime): the service's ``ServerSpeechStopped``
                       event names the caller frame holding ``audio_end_ms -
                       silence_ms`` and the offset into it: that frame's capture
                       stamp plus the offset. Unknown when the position fell in
                       audio replayed into a new session (no frame), or was pruned
sent                   audio brain (realtime): the chunk holding the speech end reached
                       the brain, which sends what it receives (server VAD: plus the
                       same offset, so capture is the chunk's own transit); text
                       brain (chained): the user aggregator handed the turn's
                       context to the LLM
server_received        the brain's first response event, as we received it (the
                       protocol carries no server stamp): the realtime service's
                       ``ResponseCreated`` call event, else its first response frame;
                       for a text brain, the LLM's first text
first_audio_delta      the first bot audio frame out of the brain (realtime) or TTS
first_audio_written    the first bot audio frame handed to the output transport
playback               the output transport's playback report
                       (:class:`PlaybackReports`); unknown when it gives none
=====================  ===================================================================

On the realtime path "uplink" (sent -> first response event) therefore
holds the network both ways *and* the server's end-of-turn wait (server VAD:
``silence_ms`` of silence after the speech end, plus its decision), since the
protocol carries no server timestamps to split them. When a local VAD and
the server's both report a speech end, the later one before the response
starts wins (the tracker's rule).

A boundary that is not observed stays ``None``, so its segments are unknown
and the time across them is reported as unattributed. Finished turns go to
the :class:`~voxpipe.observability.TurnLatencyTracker`, the metrics and the
call timeline (a ``turn_latency`` event per turn).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    ProposedUserStoppedSpeakingFrame,
    TTSStartedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.observability.latency import Boundary, LatencyBudget, TurnLatencyTracker
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.realtime.events import (
    RealtimeCallEventFrame,
    ResponseCreated,
    ServerSpeechStopped,
)
from voxpipe.timeline import EventKind, Timeline

_FRAME_TYPES: tuple[type[Frame], ...] = (
    InputAudioRawFrame,
    OutputAudioRawFrame,
    LLMContextFrame,
    EndFrame,
    CancelFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    RealtimeCallEventFrame,
    TTSStartedFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
_KEPT_CHUNKS = 1_500  # input chunks remembered (30 s of 20 ms): far more than a VAD stop delay
_AUDIO_RESPONSE = (TTSStartedFrame, OutputAudioRawFrame)
_ANSWERED = frozenset(
    {
        Boundary.SERVER_RECEIVED,
        Boundary.FIRST_AUDIO_DELTA,
        Boundary.FIRST_AUDIO_WRITTEN,
        Boundary.PLAYBACK,
    }
)


class BrainKind(enum.Enum):
    """What the brain takes in and gives out, which decides where a turn is "sent"."""

    SPEECH = "speech"  # a speech-to-speech service: hears the caller's audio, speaks
    TEXT = "text"  # the chained LLM: gets the turn's context, writes text for the TTS


def brain_kind(brain: FrameProcessor) -> BrainKind:
    """SPEECH for pipecat's OpenAI Realtime service and its subclasses, else TEXT."""
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    return BrainKind.SPEECH if isinstance(brain, OpenAIRealtimeLLMService) else BrainKind.TEXT


class CaptureStamps(Protocol):
    """A transport that knows when each caller audio frame was captured."""

    def capture_ms(self, frame: InputAudioRawFrame) -> float | None:
        """Capture time of ``frame`` on the observer's clock, or None if unknown."""
        ...


class PlaybackReports(Protocol):
    """An output transport that reports when audio really started playing."""

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first audio handed over at or after ``since_ms`` started playing."""
        ...


@dataclass
class _Chunk:
    frame_id: int
    start_pos_ms: float  # position in the caller's audio
    end_pos_ms: float
    captured_ms: float
    at_brain_ms: float | None = None


def is_response_started(frame: Frame) -> bool:
    """True for the realtime service's call event saying a response was created."""
    return isinstance(frame, RealtimeCallEventFrame) and isinstance(frame.event, ResponseCreated)


class LatencyObserver(InlineObserver):
    """Feeds a :class:`TurnLatencyTracker` from pipeline frames; see the module docstring.

    It follows audio through the pipeline (into a VAD, into an audio brain, into
    the output), so it observes every push of the frame types it needs; run
    inline (:class:`~voxpipe.processors.observability.inline.ObservedPipeline`)
    that costs a call per push and no queueing.

    Args:
        now_ms: the clock every stamp is read from (use the transport's).
        brain: the realtime service, or the LLM on the chained path.
        kind: what the brain is; guessed from its type by default (:func:`brain_kind`).
        output: the output transport processor (``transport.output()``).
        capture: the transport's capture stamps, if it keeps them.
        playback: the transport's playback reports, if it gives them.
        tracker: where turns are cut; a new one by default.
        metrics: where finished turns are observed, if anywhere.
        timeline: the call timeline that gets a ``turn_latency`` event per turn.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = _FRAME_TYPES

    def __init__(
        self,
        now_ms: Callable[[], float],
        *,
        brain: FrameProcessor,
        output: FrameProcessor,
        kind: BrainKind | None = None,
        capture: CaptureStamps | None = None,
        playback: PlaybackReports | None = None,
        tracker: TurnLatencyTracker | None = None,
        metrics: VoxpipeMetrics | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        super().__init__(every_push=True)
        self.tracker = tracker or TurnLatencyTracker()
        self._now = now_ms
        self._brain = brain
        self._output = output
        self._capture = capture
        self._playback = playback
        self._metrics = metrics
        self._timeline = timeline
        self._chunks: deque[_Chunk] = deque()
        self._by_frame: dict[int, _Chunk] = {}
        self._vads: set[int] = set()  # processors that run a VAD (they sent a VAD frame)
        self._last_into: dict[int, _Chunk] = {}  # VAD processor id -> latest chunk pushed to it
        self.kind = kind or brain_kind(brain)
        self._brain_hears_audio = self.kind is BrainKind.SPEECH
        self._written_ms: float | None = None  # first audio handed to output, this turn
        self._playback_due = False
        self._finished = False
        self._marked: set[Boundary] = set()  # later boundaries keep their first mark anyway

    @property
    def turns(self) -> list[LatencyBudget]:
        """Every turn finished so far."""
        return self.tracker.turns

    def observe(self, data: FramePushed, first: bool) -> None:
        frame = data.frame
        if isinstance(frame, InputAudioRawFrame):
            self._on_input_audio(data, frame, first)
        elif isinstance(frame, OutputAudioRawFrame):
            self._on_output_audio(data, first)
        elif isinstance(frame, LLMContextFrame):
            if data.destination is self._brain:
                self._on_context(data)
        elif isinstance(frame, EndFrame | CancelFrame):
            # Once the end reaches the output, every frame before it has been handed over.
            if data.destination is self._output:
                self.finish()
        elif not first:
            return
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._vads.add(id(data.source))  # from now on, audio into it is followed
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            if data.direction is FrameDirection.DOWNSTREAM:
                self._on_vad_stopped(data.source, frame.stop_secs)
        elif isinstance(frame, ProposedUserStoppedSpeakingFrame):
            # Server VAD: the caller's next turn ended. It arrives before that turn's
            # response.created, so an answered turn closes here (if the service's
            # ServerSpeechStopped, pushed just before, did not already start the next).
            if data.direction is FrameDirection.DOWNSTREAM and self._marked & _ANSWERED:
                self._close_turn()
        elif (
            isinstance(frame, RealtimeCallEventFrame)
            and isinstance(frame.event, ServerSpeechStopped)
            and data.source is self._brain
        ):
            self._on_server_speech_stopped(frame.event)
        elif (
            data.source is self._brain
            and Boundary.SERVER_RECEIVED not in self._marked
            and self._is_response_event(frame)
        ):
            self._mark(Boundary.SERVER_RECEIVED, self._pushed_at(data))

    def finish(self) -> LatencyBudget | None:
        """Close the last turn (the call ended); safe to call more than once."""
        if self._finished:
            return None
        self._finished = True
        return self._close_turn()

    def _close_turn(self) -> LatencyBudget | None:
        self._resolve_playback()
        budget = self.tracker.finish()
        self._written_ms = None
        self._playback_due = False
        self._marked.clear()
        if budget is not None:
            self._publish(budget)
        return budget

    def _is_response_event(self, frame: Frame) -> bool:
        if self._brain_hears_audio:
            return is_response_started(frame) or isinstance(
                frame, (*_AUDIO_RESPONSE, LLMFullResponseStartFrame)
            )
        # A text brain announces a response before it has one: its first text is the event.
        return isinstance(frame, LLMTextFrame) or is_response_started(frame)

    def _pushed_at(self, data: FramePushed) -> float:
        """When the frame was pushed, on our clock (observers run a little behind the push)."""
        now = self._now()
        if data.timestamp <= 0:
            return now
        lag_ns = data.source.get_clock().get_time() - data.timestamp
        return now - max(lag_ns, 0) / 1e6

    def _on_input_audio(self, data: FramePushed, frame: InputAudioRawFrame, first: bool) -> None:
        chunk = self._new_chunk(data, frame) if first else None
        into = id(data.destination)
        to_brain = self._brain_hears_audio and data.destination is self._brain
        if into not in self._vads and not to_brain:
            return  # only the VAD's and the brain's intake matter
        chunk = chunk or self._by_frame.get(frame.id)
        if chunk is None:
            return
        if into in self._vads:
            self._last_into[into] = chunk
        if to_brain and chunk.at_brain_ms is None:
            chunk.at_brain_ms = self._pushed_at(data)

    def _new_chunk(self, data: FramePushed, frame: InputAudioRawFrame) -> _Chunk:
        duration = len(frame.audio) / 2 / max(frame.num_channels, 1) / frame.sample_rate * 1000
        start = self._chunks[-1].end_pos_ms if self._chunks else 0.0
        stamp = self._capture.capture_ms(frame) if self._capture is not None else None
        captured = self._pushed_at(data) if stamp is None else stamp
        chunk = _Chunk(frame.id, start, start + duration, captured)
        if len(self._chunks) >= _KEPT_CHUNKS:
            del self._by_frame[self._chunks.popleft().frame_id]
        self._chunks.append(chunk)
        self._by_frame[frame.id] = chunk
        return chunk

    def _at_position(self, pos_ms: float) -> _Chunk | None:
        for chunk in reversed(self._chunks):
            if chunk.start_pos_ms <= pos_ms < chunk.end_pos_ms:
                return chunk
            if chunk.end_pos_ms <= pos_ms:
                return None
        return None

    def _on_vad_stopped(self, vad: FrameProcessor, stop_secs: float) -> None:
        trigger = self._last_into.get(id(vad))
        if trigger is None:
            return  # no audio seen going into the VAD: the speech end is unknown
        end_pos = trigger.end_pos_ms - stop_secs * 1000
        chunk = self._at_position(end_pos)
        if chunk is None:
            return
        self._mark(Boundary.SPEECH_END, chunk.captured_ms + (end_pos - chunk.start_pos_ms))
        if self._brain_hears_audio and chunk.at_brain_ms is not None:
            self._mark(Boundary.SENT, chunk.at_brain_ms)

    def _on_server_speech_stopped(self, event: ServerSpeechStopped) -> None:
        if event.frame_id is None or event.offset_ms is None:
            return  # replayed or forgotten audio: the speech end is unknown
        chunk = self._by_frame.get(event.frame_id)
        if chunk is None:
            return
        self._mark(Boundary.SPEECH_END, chunk.captured_ms + event.offset_ms)
        if chunk.at_brain_ms is not None:
            self._mark(Boundary.SENT, chunk.at_brain_ms + event.offset_ms)
        elif event.sent_at_ms is not None:
            self._mark(Boundary.SENT, event.sent_at_ms + event.offset_ms)

    def _on_context(self, data: FramePushed) -> None:
        if data.direction is FrameDirection.DOWNSTREAM and not self._brain_hears_audio:
            self._mark(Boundary.SENT, self._pushed_at(data))

    def _on_output_audio(self, data: FramePushed, first: bool) -> None:
        first_delta = Boundary.FIRST_AUDIO_DELTA not in self._marked
        if first_delta and first and data.source is not self._output:
            self._mark(Boundary.FIRST_AUDIO_DELTA, self._pushed_at(data))
            if data.source is self._brain and self._brain_hears_audio:
                self._mark(Boundary.SERVER_RECEIVED, self._pushed_at(data))
        if data.destination is self._output and self._written_ms is None:
            self._written_ms = self._pushed_at(data)
            self._playback_due = self._playback is not None
            self._mark(Boundary.FIRST_AUDIO_WRITTEN, self._written_ms)
        elif self._playback_due:
            self._resolve_playback()

    def _resolve_playback(self) -> None:
        if not self._playback_due or self._playback is None or self._written_ms is None:
            return
        played = self._playback.first_played_ms(self._written_ms)
        if played is not None:
            self._playback_due = False
            self._mark(Boundary.PLAYBACK, played)

    def _mark(self, boundary: Boundary, at_ms: float) -> None:
        if boundary in self._marked:
            return
        if boundary is Boundary.SPEECH_END:
            self._resolve_playback()  # the turn may be cut now: settle what it still owes
        finished = self.tracker.mark(boundary, at_ms)
        if finished is not None:
            self._written_ms = None
            self._playback_due = False
            self._marked.clear()
            self._publish(finished)
        if boundary not in (Boundary.SPEECH_END, Boundary.SENT):
            self._marked.add(boundary)

    def _publish(self, budget: LatencyBudget) -> None:
        if self._metrics is not None:
            self._metrics.observe_turn(budget)
        if self._timeline is not None:
            known = [ms for ms in budget.stamps.chain() if ms is not None]
            at = known[0] if known else self._now()
            self._timeline.add(
                at, EventKind.TURN_LATENCY, turn=len(self.tracker.turns), **budget.as_dict()
            )
