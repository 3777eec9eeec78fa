"""A turn's stamps keep the order of the pushes they come from, whatever the load.

The latency observer converts a push's pipeline-clock time to the call's clock
by reading both clocks one after the other. A thread preempted between the two
reads stamps that push too early; before the fix, reading them twice for one
push (first audio from the brain straight into the output) or once each for
two close pushes made ``inference`` or ``downlink`` negative (fc19, a fresh
clone at load ~8: ``test_report_call`` failed so). The clocks here are driven
by hand, so the preemption is exact and the test runs the same on any load.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipecat.clocks.base_clock import BaseClock
from pipecat.frames.frames import OutputAudioRawFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.call.events import ResponseCreated
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.observability.latency import Segment
from voxpipe.processors.observability.latency import LatencyObserver
from voxpipe.processors.observability.sources import BrainKind

MS = 1_000_000  # ns


class HandClock(BaseClock):
    """The pipeline's clock, read back from a script (ns)."""

    def __init__(self, readings: Iterator[int]) -> None:
        self._readings = readings

    def get_time(self) -> int:
        return next(self._readings)

    def start(self) -> None:
        pass


class Clocked(FrameProcessor):
    """A processor on the hand-driven clock."""

    def __init__(self, clock: BaseClock, name: str) -> None:
        super().__init__(name=name)
        self._hand_clock = clock

    def get_clock(self) -> BaseClock:
        return self._hand_clock


def push(
    source: FrameProcessor, destination: FrameProcessor, frame: object, at_ms: int
) -> FramePushed:
    return FramePushed(
        source=source,
        destination=destination,
        frame=frame,  # type: ignore[arg-type]
        direction=FrameDirection.DOWNSTREAM,
        timestamp=at_ms * MS,
    )


def audio() -> OutputAudioRawFrame:
    return OutputAudioRawFrame(audio=b"\0\0" * 480, sample_rate=24_000, num_channels=1)


def test_a_preempted_read_does_not_stamp_a_push_before_the_one_before_it() -> None:
    # Our clock equals the pipeline's (offset 0). The response starts at 1,000 ms and
    # is observed at once; its first audio is pushed at 1,013 ms, our clock is read
    # at 1,013, then the thread is preempted 30 ms before the pipeline clock is read:
    # 1,013 - (1,043 - 1,013) = 983, before the response started.
    ours = iter([1_000.0, 1_013.0, 1_013.0, 1_013.0])
    pipeline = iter([1_000 * MS, 1_043 * MS, 1_043 * MS, 1_043 * MS])
    clock = HandClock(pipeline)
    brain, output = Clocked(clock, "brain"), Clocked(clock, "output")
    observer = LatencyObserver(
        lambda: next(ours), brain=brain, output=output, kind=BrainKind.SPEECH
    )

    started = RealtimeCallEventFrame(event=ResponseCreated(response_id="resp_1"))
    observer.observe(push(brain, output, started, 1_000), first=True)
    observer.observe(push(brain, output, audio(), 1_013), first=True)
    turn = observer.finish()

    assert turn is not None
    assert turn.segments[Segment.INFERENCE] == 0  # clamped to the start, never negative
    assert turn.segments[Segment.DOWNLINK] == 0  # one push into the output: one stamp
    assert not turn.skewed


def test_one_push_that_marks_three_boundaries_stamps_them_alike() -> None:
    # First audio straight from the brain into the output, with no response event
    # before it: server received, first audio delta and first audio written are one
    # push. Our clock moves between reads (1,000 then 1,005 ms) as it does under load.
    ours = iter([1_000.0, 1_005.0, 1_010.0])
    pipeline = iter([1_000 * MS, 1_000 * MS, 1_000 * MS])
    clock = HandClock(pipeline)
    brain, output = Clocked(clock, "brain"), Clocked(clock, "output")
    observer = LatencyObserver(
        lambda: next(ours), brain=brain, output=output, kind=BrainKind.SPEECH
    )

    observer.observe(push(brain, output, audio(), 990), first=True)
    turn = observer.finish()

    assert turn is not None
    stamps = turn.stamps
    assert stamps.server_received_ms == stamps.first_audio_delta_ms == 990.0
    assert stamps.first_audio_written_ms == 990.0
    assert turn.segments[Segment.INFERENCE] == turn.segments[Segment.DOWNLINK] == 0
