"""One browser's call over WebRTC: pipecat's SmallWebRTC transport, made a voxpipe transport.

On top of pipecat's ``SmallWebRTCTransport`` (aiortc) it

- reports playback through the seam (:class:`~voxpipe.playback.PlaybackReporter`):
  each chunk as it leaves for the browser, laid end to end at real time, and
  the browser's own playout position when the page reports one;
- records both sides for ``call.wav`` and stamps caller frames for the
  latency instruments (:class:`~voxpipe.transports.recording.CallRecording`);
- notes when the browser was last heard from (any audio frame or data-channel
  message), so a dead tab ends its call within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import InputAudioRawFrame, OutputAudioRawFrame
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import (
    SmallWebRTCInputTransport,
    SmallWebRTCOutputTransport,
    SmallWebRTCTransport,
)

from voxpipe.observability.capture import CaptureLog
from voxpipe.transports.playback_reports import ReportsPlayback
from voxpipe.transports.recording import CallRecording
from voxpipe.webrtc.liveness import PeerLiveness

IN_RATE = 16_000
OUT_RATE = 24_000


def monotonic_ms() -> float:
    """The transport's clock (monotonic milliseconds), shared by its reports and recording."""
    return time.monotonic() * 1000


def call_params(*, in_rate: int = IN_RATE, out_rate: int = OUT_RATE) -> TransportParams:
    """Audio in and out, 20 ms output chunks (a browser's jitter buffer smooths the rest)."""
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=in_rate,
        audio_out_enabled=True,
        audio_out_sample_rate=out_rate,
        audio_out_10ms_chunks=2,
    )


class WebRTCCallInput(SmallWebRTCInputTransport):
    """pipecat's WebRTC input, recording each caller frame as it arrives."""

    def __init__(self, transport: WebRTCCallTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._call = transport

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        now = self._call.now_ms()
        self._call.heard(now)
        self._call.recording.caller_audio(frame.id, frame.audio, frame.sample_rate, now)
        await super().push_audio_frame(frame)


class WebRTCCallOutput(ReportsPlayback, SmallWebRTCOutputTransport):
    """pipecat's WebRTC output, reporting playback and recording what it sends."""

    def __init__(self, transport: WebRTCCallTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._call = transport

    def now_ms(self) -> float:
        return self._call.now_ms()

    def audio_played(self, frame: OutputAudioRawFrame, started_ms: float) -> None:
        self._call.recording.bot_audio(frame.audio, frame.sample_rate, started_ms)


class WebRTCCallTransport(SmallWebRTCTransport):
    """A browser call's transport (see the module docstring).

    Args:
        connection: the peer connection, its offer answered already.
        params: pipecat's transport parameters (default :func:`call_params`).
        record_audio: keep both sides' audio for ``call.wav``.
        silent_ms, connect_timeout_ms: a browser not heard from for ``silent_ms``
            is gone; one not connected within ``connect_timeout_ms`` never came.
        now_ms: the clock of its reports, recording and liveness.
    """

    def __init__(
        self,
        connection: SmallWebRTCConnection,
        params: TransportParams | None = None,
        *,
        record_audio: bool = True,
        silent_ms: int = 5_000,
        connect_timeout_ms: int = 10_000,
        now_ms: Callable[[], float] = monotonic_ms,
    ) -> None:
        params = params or call_params()
        super().__init__(connection, params)
        self.connection = connection
        self.now_ms = now_ms
        self.recording = CallRecording(
            now_ms,
            in_sample_rate=params.audio_in_sample_rate or IN_RATE,
            out_sample_rate=params.audio_out_sample_rate or OUT_RATE,
            keep_audio=record_audio,
        )
        self.liveness = PeerLiveness(timeout_ms=silent_ms, connect_timeout_ms=connect_timeout_ms)
        self.liveness.opened(now_ms())

    def heard(self, now_ms: float) -> None:
        """The browser showed it is alive (audio arrived, or a data-channel message)."""
        self.liveness.heard(now_ms)

    def input(self) -> WebRTCCallInput:
        if not self._input:
            self._input = WebRTCCallInput(self, self._client, self._params, name=self._input_name)
        assert isinstance(self._input, WebRTCCallInput)
        return self._input

    def output(self) -> WebRTCCallOutput:
        if not self._output:
            self._output = WebRTCCallOutput(
                self, self._client, self._params, name=self._output_name
            )
        assert isinstance(self._output, WebRTCCallOutput)
        return self._output

    # What the call's instruments ask a transport (CaptureStamps, PlaybackReports).

    @property
    def captures(self) -> CaptureLog:
        """Caller frames by id, stamped when they arrived."""
        return self.recording.captures

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first bot chunk at or after ``since_ms`` left for the browser."""
        return self.recording.first_played_ms(since_ms)
