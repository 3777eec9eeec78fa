"""One browser's call over WebRTC: pipecat's SmallWebRTC transport, made a voxpipe transport.

On top of pipecat's ``SmallWebRTCTransport`` (aiortc) it

- reports playback through the seam (:class:`~voxpipe.playback.PlaybackReporter`):
  each chunk as it leaves for the browser, laid end to end at real time, and
  the browser's own playout position when the page reports one;
- records both sides for ``call.wav`` and stamps caller frames for the
  latency instruments (:class:`~voxpipe.transports.recording.CallRecording`);
- notes when the browser was last heard from (any audio frame or data-channel
  message), so a dead tab ends its call within seconds;
- turns the page's playout reports (what its speaker is playing, by RTP
  timestamp) into positions the far end *confirmed* for the playback ledger.

To map the page's RTP timestamps to the stream it needs the sender's random
RTP origin, which aiortc keeps private: :func:`learn_rtp_origin` reads it from
the first packets (aiortc is pinned; ``tests/transports/test_webrtc_far_end.py``
fails if that stops working). Without it the call keeps the sent position.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import Frame, InputAudioRawFrame, InterruptionFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import (
    SmallWebRTCClient,
    SmallWebRTCInputTransport,
    SmallWebRTCOutputTransport,
    SmallWebRTCTransport,
)

from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.observability.capture import CaptureLog
from voxpipe.playback import PlaybackSink
from voxpipe.transports.playback_reports import ReportsPlayback
from voxpipe.transports.recording import CallRecording
from voxpipe.transports.webrtc.track import use_steady_track
from voxpipe.webrtc.liveness import PeerLiveness
from voxpipe.webrtc.playout import RTP_MODULUS, PlayoutMapper, PositionHeard

IN_RATE = 16_000
OUT_RATE = 24_000
PAGE_REPORT_AGE_MS = 1_200  # the page reports the frame its receiver delivered last, < 1 s ago
CUT_REPORT_MS = 400  # how long a truncation waits for the page to say where a cut stopped it
CUT_ANSWER_MS = 300  # how long the page's answer may take before its own reports settle a cut
RTP_PER_MS = 48  # Opus's RTP clock
REJOIN_CLOSE_S = 2.0
STREAMED_BEFORE_ORIGIN = 3000  # chunks kept until the RTP origin is known (a minute of audio)


def release_track(track: Any) -> None:
    """Let every write waiting on pipecat's outgoing track go: its peer will pull no more.

    pipecat's output waits until the track's sender has pulled each chunk it
    wrote; with the old connection gone nothing would, and the wait would end
    the call as a dead output.
    """
    if track is None:
        return
    while track._chunk_queue:
        _chunk, future = track._chunk_queue.popleft()
        if future is not None and not future.done():
            future.set_result(True)


def adopt_connection(client: SmallWebRTCClient, connection: SmallWebRTCConnection) -> None:
    """Move pipecat's WebRTC client to ``connection``, with the handlers it gives its first.

    pipecat registers these on the connection it is built with and has no way
    to change it; a rejoin needs exactly that (its media reader waits for a new
    track, and the new connection's ``connected`` makes new tracks).
    """
    client._webrtc_connection = connection

    @connection.event_handler("connected")
    async def _connected(_connection: Any) -> None:
        await client._handle_client_connected()

    @connection.event_handler("disconnected")
    async def _disconnected(_connection: Any) -> None:
        await client._handle_peer_disconnected()

    @connection.event_handler("closed")
    async def _closed(_connection: Any) -> None:
        await client._handle_client_closed()

    @connection.event_handler("app-message")
    async def _message(_connection: Any, message: Any) -> None:
        await client._handle_app_message(message, connection.pc_id)


def learn_rtp_origin(sender: Any, learned: Callable[[int], None]) -> None:
    """Tell ``learned`` the RTP timestamp of stream position 0 on aiortc ``sender``.

    aiortc draws a random origin and keeps it in a local of its send loop; it
    stamps each packet ``origin + encoded timestamp`` and keeps the last one
    sent. The first two encoded frames give it away: after the first was sent,
    ``origin = last RTP timestamp - that frame's encoded timestamp``.
    """
    original = sender._next_encoded_frame
    first: list[int] = []

    async def noting(codec: Any) -> Any:
        if first:
            sender._next_encoded_frame = original  # learned: back to aiortc's own
            learned((sender._RTCRtpSender__rtp_timestamp - first[0]) % RTP_MODULUS)
        frame = await original(codec)
        if frame is not None and not first:
            first.append(frame.timestamp)
        return frame

    sender._next_encoded_frame = noting


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
        self._utterance: str | None = None  # whose audio is being written (none after a cut)
        self._sending = False  # an utterance's audio went out since it began, and no cut

    def now_ms(self) -> float:
        return self._call.now_ms()

    def report_playback_to(self, sink: PlaybackSink) -> None:
        super().report_playback_to(sink)
        # After a cut, the page says where it stopped (its answer to playout_request).
        sink.reports_cut_positions(CUT_REPORT_MS)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        cut = isinstance(frame, InterruptionFrame) and self._sending  # cut while it spoke
        if isinstance(frame, InterruptionFrame):
            self._sending = False
            self._utterance = None
        await super().process_frame(frame, direction)  # the ledger hears of the cut first
        if cut:
            self._call.cut_at_output()

    async def write_transport_frame(self, frame: Frame) -> None:
        if isinstance(frame, PlaybackMarkerFrame):
            self._utterance = frame.utterance_id
        await super().write_transport_frame(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        # Where this chunk will sit in the stream: nothing runs between here and pipecat
        # queueing it on the track, and the track sends it next (silence only fills an empty
        # queue). Silence the track fills in between chunks is then never counted as heard.
        stream_ms = self.stream_ms()
        written = await super().write_audio_frame(frame)
        if written and self._utterance is not None:
            duration_ms = len(frame.audio) / 2 / frame.num_channels / frame.sample_rate * 1000
            self._call.audio_streamed(self._utterance, stream_ms, duration_ms)
            self._sending = True
        return written

    def audio_played(self, frame: OutputAudioRawFrame, started_ms: float) -> None:
        self._call.recording.bot_audio(frame.audio, frame.sample_rate, started_ms)

    def stream_ms(self) -> float:
        """Where in the call's outgoing stream the next audio written will sit.

        pipecat's track starts at 0 with each peer connection; after a rejoin
        the call's stream goes on from where the old one was.
        """
        track = self._client._audio_output_track
        if track is None:
            return self._call.stream_base_ms
        queued = len(track._chunk_queue) * track._samples_per_10ms
        return self._call.stream_base_ms + (track._timestamp + queued) * 1000 / track._sample_rate


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
        use_steady_track(self._client)  # no holes in a reply when the loop runs late
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
        self.playout: PlayoutMapper | None = None  # once the sender's RTP origin is known
        self._streamed: list[tuple[str, float, float]] = []  # audio streamed before that
        self._cut_at_ms: float | None = None  # the output cut the bot then; the page will say where
        self._cut_candidate: PositionHeard | None = None  # the newest report since that cut
        self._answered: tuple[PositionHeard, float] | None = None  # the last answer, and when
        self._cut_timer: asyncio.TimerHandle | None = None
        self.rejoins = 0
        self.rejoining = False  # the old connection's close is a rejoin's, not a hang-up
        self.stream_base_ms = 0.0  # where the current sender's stream starts in the call's

    async def rejoin(self, connection: SmallWebRTCConnection) -> None:
        """The caller's new peer connection (a network switch) carries this call on.

        The old connection is closed (its close is not a hang-up), pipecat's
        client is moved to the new one, and the outgoing stream continues where
        it was: the new sender's stream starts at the old one's position.
        """
        old, client = self.connection, self._client
        self.stream_base_ms = self.output().stream_ms()
        track, client._audio_output_track = client._audio_output_track, None  # writes wait
        release_track(track)
        closed = asyncio.Event()

        async def _closed(_connection: Any) -> None:
            closed.set()

        old.add_event_handler("closed", _closed)
        self.rejoining = True
        try:
            with contextlib.suppress(Exception):
                await old.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), REJOIN_CLOSE_S)
        finally:
            self.rejoining = False
        self.connection = connection
        adopt_connection(client, connection)
        self.rejoins += 1
        await connection.connect()

    def peer_connected(self) -> None:
        """The peer is up (again, after a rejoin): learn the RTP origin of the audio it gets."""
        self.liveness.connected(self.now_ms())
        track = self._client._audio_output_track
        sender = next((s for s in self.connection.pc.getSenders() if s.track is track), None)
        if sender is not None:
            learn_rtp_origin(sender, self._origin_learned)

    def audio_streamed(self, key: str, stream_ms: float, duration_ms: float) -> None:
        """``duration_ms`` of utterance ``key``'s audio sits ``stream_ms`` into the stream."""
        if self.playout is None:
            self._streamed.append((key, stream_ms, duration_ms))
            del self._streamed[:-STREAMED_BEFORE_ORIGIN]
        else:
            self.playout.audio_sent(key, stream_ms, duration_ms)

    def playout_reported(self, message: Any) -> None:
        """A playout report from the page: what it has played, confirmed.

        Its answer to ``playout_request`` (``"requested": true``) says where a
        cut stopped playback for the caller: the page mutes the cut reply as it
        answers. A report sent on the page's own schedule may have left before
        the page heard of the cut, while it still played the reply (65 ms
        short once at load 6.5), so it settles a cut only when no answer came
        within ``CUT_ANSWER_MS``.
        """
        if self.playout is None:
            return
        heard = self.playout.report_received(message)
        if heard is None:
            return
        now = self.now_ms()
        if isinstance(message, dict) and message.get("requested") is True:
            self._answered = (heard, now)  # it may come before the output's own cut
            if self._cut_at_ms is not None:
                self._settle_cut(heard)
        elif self._cut_at_ms is not None:
            self._cut_candidate = heard
        self.output().playback_reports.position_confirmed(heard.key, heard.played_ms, now)

    def cut_at_output(self) -> None:
        """The output stopped the bot: the page's answer to the request says where it stopped."""
        now = self.now_ms()
        self._cut_at_ms, self._cut_candidate = now, None
        if self._answered is not None and now - self._answered[1] <= CUT_REPORT_MS:
            self._settle_cut(self._answered[0])  # the page answered before the output cut
            return
        with contextlib.suppress(RuntimeError):  # no loop: a report will settle it, or nothing
            self._cut_timer = asyncio.get_running_loop().call_later(
                CUT_ANSWER_MS / 1000, self._no_answer
            )

    def _no_answer(self) -> None:
        """No answer to the request in time: the newest report since the cut, if any."""
        if self._cut_at_ms is not None and self._cut_candidate is not None:
            self._settle_cut(self._cut_candidate)
        self._cut_at_ms = None

    def _settle_cut(self, heard: PositionHeard) -> None:
        self.output().playback_reports.cut_position(heard.key, heard.played_ms, self.now_ms())
        self._cut_at_ms, self._cut_candidate, self._answered = None, None, None
        if self._cut_timer is not None:
            self._cut_timer.cancel()
            self._cut_timer = None

    def _origin_learned(self, origin_rtp: int) -> None:
        # Stream position 0 of the call sits where this sender's stream began, less its base.
        origin_rtp = (origin_rtp - round(self.stream_base_ms * RTP_PER_MS)) % RTP_MODULUS
        if self.playout is not None:
            self.playout.sender_changed(origin_rtp)
            return
        self.playout = PlayoutMapper(origin_rtp, max_report_age_ms=PAGE_REPORT_AGE_MS)
        for key, stream_ms, duration_ms in self._streamed:
            self.playout.audio_sent(key, stream_ms, duration_ms)
        self._streamed.clear()

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
