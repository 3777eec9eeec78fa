"""Stamps each turn's latency boundaries from the frames a pipeline really pushes.

Every stamp is on one clock, the ``now_ms`` given (normally the transport's),
and comes from something the pipeline did, never from a guess:

=====================  ===================================================================
boundary               where it comes from
=====================  ===================================================================
speech_end             local VAD: its stop frame; the audio that triggered it, ``stop_secs``
                       earlier, at that audio's capture stamp (from the transport's
                       capture log when it keeps one, else when the input pushed it).
                       Server VAD (realtime): the service's ``ServerSpeechStopped``
                       event names the caller frame holding ``audio_end_ms -
                       silence_ms`` and the offset into it: that frame's capture
                       stamp plus the offset. Unknown when the position fell in
                       audio replayed into a new session (no frame), or was pruned
sent                   audio brain (realtime): the chunk holding the speech end went
                       out to the model, plus the offset into it (so capture is the
                       chunk's own transit): the service's own send report
                       (:class:`SendReports`), else when the chunk reached it; text
                       brain (chained): the user aggregator handed the turn's
                       context to the LLM
server_received        the brain's first response event, as we received it (the
                       protocol carries no server stamp): the realtime service's
                       ``ResponseCreated`` call event, else its first response frame;
                       for a text brain, the LLM's first text
first_audio_delta      the first bot audio frame out of the brain (realtime) or TTS
                       (a speech brain's own audio; a text brain's first pushed)
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

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

from pipecat.clocks.base_clock import BaseClock
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

from voxpipe.call.events import ResponseCreated, ServerSpeechStopped
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.observability.capture import CapturedChunk, CaptureLog
from voxpipe.observability.latency import Boundary, LatencyBudget, TurnLatencyTracker
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.inline import FIRST_PUSH, InlineObserver, Route
from voxpipe.processors.observability.sources import (
    BrainKind,
    CaptureStamps,
    PlaybackReports,
    SendReports,
    brain_kind,
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
_KEPT_SENDS = 1_500  # frames whose arrival at the brain is remembered (30 s of 20 ms)
_AUDIO_RESPONSE = (TTSStartedFrame, OutputAudioRawFrame)
_ANSWERED = frozenset(
    {
        Boundary.SERVER_RECEIVED,
        Boundary.FIRST_AUDIO_DELTA,
        Boundary.FIRST_AUDIO_WRITTEN,
        Boundary.PLAYBACK,
    }
)


def is_response_started(frame: Frame) -> bool:
    """True for the realtime service's call event saying a response was created."""
    return isinstance(frame, RealtimeCallEventFrame) and isinstance(frame.event, ResponseCreated)


class LatencyObserver(InlineObserver):
    """Feeds a :class:`TurnLatencyTracker` from pipeline frames; see the module docstring.

    Stamps come from the parts that know them where they can: the transport's
    capture log and playback reports, the brain's send reports. Otherwise it
    follows a few frames into or out of a few processors (:meth:`route`):
    caller audio out of the input and into an audio brain, and into a VAD
    always; the context into the brain; bot audio out of a speech brain, and
    into the output; the call's end into the output. Run inline
    (:class:`~voxpipe.processors.observability.inline.ObservedPipeline`), the
    other hops cost it nothing.

    Args:
        now_ms: the clock every stamp is read from (use the transport's).
        brain: the realtime service, or the LLM on the chained path.
        output: the output transport processor (``transport.output()``).
        input: the input transport processor (``transport.input()``): with no
            capture log from the transport, caller audio is logged as it leaves it.
        kind: what the brain is; guessed from its type by default (:func:`brain_kind`).
        capture: the transport's capture log, if it keeps one.
        playback: the transport's playback reports, if it gives them.
        tracker: where turns are cut; a new one by default.
        metrics: where finished turns are observed, if anywhere.
        timeline: the call timeline that gets a ``turn_latency`` event per turn.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = _FRAME_TYPES
    follows_hops: ClassVar[bool] = True

    def __init__(
        self,
        now_ms: Callable[[], float],
        *,
        brain: FrameProcessor,
        output: FrameProcessor,
        input: FrameProcessor | None = None,
        kind: BrainKind | None = None,
        capture: CaptureStamps | None = None,
        playback: PlaybackReports | None = None,
        tracker: TurnLatencyTracker | None = None,
        metrics: VoxpipeMetrics | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        super().__init__()
        self.tracker = tracker or TurnLatencyTracker()
        self._now = now_ms
        self._brain = brain
        self._output = output
        self._input = input
        self._playback = playback
        self._metrics = metrics
        self._timeline = timeline
        self.kind = kind or brain_kind(brain)
        self._brain_hears_audio = self.kind is BrainKind.SPEECH
        # The caller's audio by position: the transport's log, else our own.
        self._own_log = capture is None
        self._log = capture.captures if capture is not None else CaptureLog()
        # When caller frames went out: the brain's own report, else when they reached it.
        self._sends = brain if isinstance(brain, SendReports) else None
        self._at_brain: OrderedDict[int, int] = OrderedDict()  # frame id -> pipeline ns
        self._clock: BaseClock | None = None  # the pipeline's, once audio reached the brain
        self._vads: set[FrameProcessor] = set()  # processors that run a VAD (sent a VAD frame)
        self._last_into: dict[FrameProcessor, int] = {}  # VAD -> last frame id pushed into it
        # Where later hops of caller audio matter: the VADs (as found) and, when it
        # does not report its sends, an audio brain.
        self._follow_brain = self._brain_hears_audio and self._sends is None
        self._audio_intakes: set[FrameProcessor] = {brain} if self._follow_brain else set()
        self._written_ms: float | None = None  # first audio handed to output, this turn
        self._playback_due = False
        self._finished = False
        self._marked: set[Boundary] = set()  # later boundaries keep their first mark anyway
        self._last_push_ms = -math.inf  # the latest push stamped (pushes are seen in order)

    def route(self, kind: type[Frame]) -> Route:
        if issubclass(kind, InputAudioRawFrame):
            if not self._own_log:
                return Route(first=False, destinations=self._audio_intakes)
            if self._input is not None:
                return Route(first=False, sources={self._input}, destinations=self._audio_intakes)
            return Route(destinations=self._audio_intakes)  # a new chunk at its first push
        if issubclass(kind, OutputAudioRawFrame):
            if self._brain_hears_audio:  # the brain's own audio, and into the output
                return Route(first=False, sources={self._brain}, destinations={self._output})
            return Route(destinations={self._output})  # the TTS's: its first push
        if issubclass(kind, LLMContextFrame):
            return Route(first=False, destinations={self._brain})
        if issubclass(kind, EndFrame | CancelFrame):
            return Route(first=False, destinations={self._output})
        return FIRST_PUSH

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
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._vads.add(data.source)  # from now on, audio into it is followed
            self._audio_intakes.add(data.source)
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
        """When the frame was pushed, on our clock (observers run a little behind the push).

        Never earlier than a push seen before it: our clock and the pipeline's are
        read one after the other, and a thread preempted between the two reads
        would otherwise stamp a later push (or the same push, read again) earlier
        than the one before it, making a segment negative under load (fc19:
        first audio delta and first audio written, one push, came out reversed).
        """
        now = self._now()
        if data.timestamp > 0:
            lag_ns = data.source.get_clock().get_time() - data.timestamp
            now -= max(lag_ns, 0) / 1e6
        self._last_push_ms = max(self._last_push_ms, now)
        return self._last_push_ms

    def _on_input_audio(self, data: FramePushed, frame: InputAudioRawFrame, first: bool) -> None:
        if self._own_log and (first or data.source is self._input):
            stamp = self._pushed_at(data)
            self._log.append(frame.id, frame.num_frames / frame.sample_rate * 1000, stamp)
        destination = data.destination
        if destination in self._vads:
            self._last_into[destination] = frame.id
        if self._follow_brain and destination is self._brain and data.timestamp > 0:
            # Kept on the pipeline's clock; turned into ms only if it becomes a stamp.
            self._at_brain.setdefault(frame.id, data.timestamp)
            if len(self._at_brain) > _KEPT_SENDS:
                self._at_brain.popitem(last=False)
            self._clock = self._clock or data.source.get_clock()

    def _sent_ms(self, frame_id: int) -> float | None:
        """When the caller's frame went out to the model, on our clock."""
        if self._sends is not None:
            return self._sends.sent_ms(frame_id)
        at_ns = self._at_brain.get(frame_id)
        if at_ns is None or self._clock is None:
            return None
        return self._now() - max(self._clock.get_time() - at_ns, 0) / 1e6

    def _on_vad_stopped(self, vad: FrameProcessor, stop_secs: float) -> None:
        trigger_id = self._last_into.get(vad)
        trigger = None if trigger_id is None else self._log.by_frame(trigger_id)
        if trigger is None:
            return  # no audio seen going into the VAD: the speech end is unknown
        end_pos = trigger.end_ms - stop_secs * 1000
        chunk = self._log.at_position(end_pos)
        if chunk is not None:
            self._speech_ended(chunk, end_pos - chunk.start_ms)

    def _on_server_speech_stopped(self, event: ServerSpeechStopped) -> None:
        if event.frame_id is None or event.offset_ms is None:
            return  # replayed or forgotten audio: the speech end is unknown
        chunk = self._log.by_frame(event.frame_id)
        if chunk is not None:
            self._speech_ended(chunk, event.offset_ms, sent_ms=event.sent_at_ms)

    def _speech_ended(
        self, chunk: CapturedChunk, offset_ms: float, *, sent_ms: float | None = None
    ) -> None:
        """The voice stopped ``offset_ms`` into ``chunk``; an audio brain sent it at ``sent_ms``."""
        self._mark(Boundary.SPEECH_END, chunk.captured_ms + offset_ms)
        if not self._brain_hears_audio:
            return
        sent = sent_ms if sent_ms is not None else self._sent_ms(chunk.frame_id)
        if sent is not None:
            self._mark(Boundary.SENT, sent + offset_ms)

    def _on_context(self, data: FramePushed) -> None:
        if data.direction is FrameDirection.DOWNSTREAM and not self._brain_hears_audio:
            self._mark(Boundary.SENT, self._pushed_at(data))

    def _on_output_audio(self, data: FramePushed, first: bool) -> None:
        # A speech brain's audio is its own (routed by source); a TTS's is at its first push.
        from_brain = self._brain_hears_audio and data.source is self._brain
        new_audio = from_brain or (first and data.source is not self._output)
        pushed_at = self._pushed_at(data)  # one stamp per push, whatever it marks
        if new_audio and Boundary.FIRST_AUDIO_DELTA not in self._marked:
            self._mark(Boundary.FIRST_AUDIO_DELTA, pushed_at)
            if from_brain:
                self._mark(Boundary.SERVER_RECEIVED, pushed_at)
        if data.destination is self._output and self._written_ms is None:
            self._written_ms = pushed_at
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
