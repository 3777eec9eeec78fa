"""The playback seam for pipecat's own transports, and an opt-in estimate for the rest.

A realtime graph truncates an interrupted reply at what the caller heard, so
its output transport must report playback (:class:`~voxpipe.playback.PlaybackReporter`).
voxpipe's file transport does so itself. For pipecat's stock outputs:

- :class:`ReportsPlayback` is a mixin for any pipecat ``BaseOutputTransport``
  subclass: it reports an utterance's start when its marker reaches the
  output (in order with the audio), each chunk as the transport writes it, and
  the cut when an interruption reaches it. The position is what left the
  server, laid end to end at real time; a far end that can confirm what it
  played (telephony marks, a browser's stats) reports that too. It also hands
  the audio itself, with when it started, to whoever asks
  (:meth:`ReportsPlayback.report_audio_to`: the echo guard's estimate).
- :class:`ReportingWebsocketServerTransport` is pipecat's WebSocket server
  transport with that mixin on its output.
- :class:`SentPlaybackEstimator` is the explicit opt-in for an output that
  reports nothing: a processor placed just before it that counts audio as
  played when it is pushed to the output, at real time. It is an estimate (it
  does not know the output's buffer) and the graph builder logs that it is used.
"""

from __future__ import annotations

import time
from typing import Any

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TTSStartedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerOutputTransport,
    SingleClientWebsocketServerTransport,
)

from voxpipe.echo import PlayedAudioSink
from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.playback import PlaybackReports, PlaybackSink


def _duration_ms(frame: OutputAudioRawFrame) -> float:
    return len(frame.audio) / 2 / frame.num_channels / frame.sample_rate * 1000


def _monotonic_ms() -> float:
    return time.monotonic() * 1000


class ReportsPlayback:
    """Mixin for a pipecat output transport: report playback through the seam.

    Put it first in the bases (``class Out(ReportsPlayback, SomeOutputTransport)``).
    """

    _playback_reports: PlaybackReports | None = None
    _audio_sinks: list[PlayedAudioSink] | None = None

    @property
    def playback_reports(self) -> PlaybackReports:
        """The sinks this output reports to."""
        if self._playback_reports is None:
            self._playback_reports = PlaybackReports()
        return self._playback_reports

    def report_playback_to(self, sink: PlaybackSink) -> None:
        """Send every playback report from now on to ``sink`` as well."""
        self.playback_reports.attach(sink)

    def report_audio_to(self, sink: PlayedAudioSink) -> None:
        """Send every chunk played from now on, with when it started, to ``sink`` too."""
        if self._audio_sinks is None:
            self._audio_sinks = []
        self._audio_sinks.append(sink)

    def now_ms(self) -> float:
        """The clock the reports use (monotonic milliseconds)."""
        return _monotonic_ms()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            self.playback_reports.playback_cut(self.now_ms())
        await super().process_frame(frame, direction)  # type: ignore[misc]

    async def write_transport_frame(self, frame: Frame) -> None:
        if isinstance(frame, PlaybackMarkerFrame):
            self.playback_reports.utterance_began(frame.utterance_id, self.now_ms())
        elif isinstance(frame, TTSStartedFrame) and frame.context_id:
            self.playback_reports.utterance_began(frame.context_id, self.now_ms())
        await super().write_transport_frame(frame)  # type: ignore[misc]

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        # Stamped as the write starts: a transport that paces its writes sleeps after sending.
        started = self.now_ms()
        written: bool = await super().write_audio_frame(frame)  # type: ignore[misc]
        if written:
            self.playback_reports.chunk_started(_duration_ms(frame), started)
            for sink in self._audio_sinks or ():
                sink.audio_played(frame.audio, frame.sample_rate, started, frame.num_channels)
            self.audio_played(frame, started)
        return written

    def audio_played(self, frame: OutputAudioRawFrame, started_ms: float) -> None:
        """A chunk went out at ``started_ms`` (a subclass records it, if it wants)."""


class ReportingWebsocketServerOutputTransport(
    ReportsPlayback, SingleClientWebsocketServerOutputTransport
):
    """pipecat's WebSocket server output, reporting what it sent as played at real time."""


class ReportingWebsocketServerTransport(SingleClientWebsocketServerTransport):
    """pipecat's single-client WebSocket server transport whose output reports playback."""

    def output(self) -> ReportingWebsocketServerOutputTransport:
        if not self._output:
            self._output = ReportingWebsocketServerOutputTransport(
                self, self._params, name=self._output_name
            )
        assert isinstance(self._output, ReportingWebsocketServerOutputTransport)
        return self._output


class SentPlaybackEstimator(FrameProcessor):
    """Counts audio as played when it is pushed to the output (an explicit estimate).

    Place it right before an output transport that does not report playback.
    """

    def __init__(self, sink: PlaybackSink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reports = PlaybackReports()
        self._reports.attach(sink)

    def now_ms(self) -> float:
        """The clock the estimate uses (monotonic milliseconds)."""
        return _monotonic_ms()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            if isinstance(frame, InterruptionFrame):
                self._reports.playback_cut(self.now_ms())
            elif isinstance(frame, PlaybackMarkerFrame):
                self._reports.utterance_began(frame.utterance_id, self.now_ms())
            elif isinstance(frame, OutputAudioRawFrame):
                self._reports.chunk_started(_duration_ms(frame), self.now_ms())
        await self.push_frame(frame, direction)
