"""One phone call over a provider's media stream (Twilio, Telnyx, Plivo), as a live transport.

The route that accepted the stream feeds every WebSocket message to
:meth:`PhoneCallTransport.receive`; the cores decide, this carries out, the
same way for every provider (:class:`~voxpipe.telephony.stream.MediaStream`
says how each spells its messages):

- the caller's G.711 at 8 kHz (the law its ``start`` announced) becomes
  ``InputAudioRawFrame``\\ s at the pipeline's rate (and DTMF keys
  ``InputDTMFFrame``\\ s); both sides are recorded for ``call.wav``
  (:class:`~voxpipe.transports.recording.CallRecording`);
- the bot's audio leaves in the same law at 8 kHz, 20 ms per message, paced
  at real time like a sound card, and is reported through the playback seam
  as it goes (:class:`~voxpipe.transports.playback_reports.ReportsPlayback`);
- :class:`~voxpipe.telephony.marks.MarkTracker` marks it (Plivo: checkpoints);
  returned marks are positions the far end confirmed, and after an
  interruption (a clear on every one) the position the cut stopped at, which
  the call's truncation waits for
  (:meth:`~voxpipe.playback.PlaybackSink.reports_cut_positions`): a probe
  mark after the clear where the provider returns pending marks (Twilio,
  Telnyx), the provider's acknowledgment where it drops them (Plivo);
- with ``passthrough`` (a brain that speaks G.711, as the realtime path's
  does), the caller's G.711 travels with its decoded PCM
  (:class:`~voxpipe.frames.G711InputAudioFrame`) for the brain to take
  unchanged, the output runs at 8 kHz, and the bot's G.711 leaves as the brain
  made it (:class:`~voxpipe.telephony.passthrough.G711Passthrough`);
- its liveness ends the call on ``stop``, a closed socket, or no media for
  ``silent_ms`` (the providers send media every 20 ms, silence included;
  marks returned for the bot's audio do not keep a silent line alive).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStartedFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from voxpipe.audio import AudioFormat
from voxpipe.frames import G711InputAudioFrame, G711OutputAudioFrame, PlaybackMarkerFrame
from voxpipe.observability.capture import CaptureLog
from voxpipe.playback import PlaybackSink
from voxpipe.telephony.events import (
    INBOUND,
    ClearAcknowledged,
    ClearConfirmation,
    DtmfReceived,
    MarkEchoed,
    MediaReceived,
    MessageMalformed,
    StreamErrored,
    StreamState,
    StreamStopped,
)
from voxpipe.telephony.marks import (
    AcknowledgmentIgnored,
    CutConfirmed,
    CutEstimated,
    MarkIgnored,
    MarksLate,
    MarkTracker,
    PlayoutEvent,
    PositionConfirmed,
)
from voxpipe.telephony.passthrough import G711Passthrough
from voxpipe.telephony.resample import StreamResampler
from voxpipe.telephony.stream import PHONE_RATE, MediaStream
from voxpipe.transports.playback_reports import ReportsPlayback
from voxpipe.transports.recording import CallRecording
from voxpipe.webrtc.liveness import PeerLiveness

IN_RATE = 16_000
OUT_RATE = 24_000
TICK_S = 0.05
CUT_REPORT_SLACK_MS = 500  # the ledger's own wait outlasts the tracker's, which estimates first


def monotonic_ms() -> float:
    """The transport's clock (monotonic milliseconds), shared by its reports and recording."""
    return time.monotonic() * 1000


def call_params(*, in_rate: int = IN_RATE, out_rate: int = OUT_RATE) -> TransportParams:
    """Audio in and out, 20 ms output chunks (one media message each)."""
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=in_rate,
        audio_out_enabled=True,
        audio_out_sample_rate=out_rate,
        audio_out_10ms_chunks=2,
        audio_out_end_silence_secs=0,  # the call is over: nobody to play silence to
    )


class PhoneCallInput(BaseInputTransport):
    """The caller's audio and keys from the stream, into the pipeline."""

    def __init__(self, call: PhoneCallTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._call = call
        self._ready = False
        self._resampler: StreamResampler | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._resampler = StreamResampler(PHONE_RATE, self.sample_rate)
        self._ready = True

    async def stop(self, frame: EndFrame) -> None:
        self._ready = False
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        self._ready = False
        await super().cancel(frame)

    async def caller_audio(self, payload: bytes, now_ms: float) -> None:
        """G.711 from the caller, in the stream's law (dropped until the pipeline runs)."""
        if not self._ready or self._resampler is None:
            return
        pcm = self._resampler.process(self._call.stream.encoding.decode(payload))
        law, rate = self._call.g711_format, self.sample_rate
        frame = (
            G711InputAudioFrame(pcm, rate, 1, g711=payload, g711_format=law)
            if law is not None
            else InputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1)
        )
        self._call.recording.caller_audio(frame.id, pcm, self.sample_rate, now_ms)
        await self.push_audio_frame(frame)

    async def key_pressed(self, digit: str) -> None:
        """A DTMF key (A-D, which pipecat has no frame for, are logged and dropped)."""
        try:
            entry = KeypadEntry(digit)
        except ValueError:
            logger.info(f"{self}: DTMF {digit!r} has no pipecat frame; dropped")
            return
        if self._ready:
            await self.push_frame(InputDTMFFrame(button=entry))


class _StreamOutput(BaseOutputTransport):
    """Sends the bot's audio as media messages at real time; ``clear`` on every interruption."""

    def __init__(self, call: PhoneCallTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._call = call
        self._next_due_ms = 0.0
        self._cut = False  # after an interruption, until the next utterance begins
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._ticker is None:
            self._ticker = self.create_task(self._tick_loop(), name="phone-marks")

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_ticking()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_ticking()
        await super().cancel(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        passthrough = self._call.passthrough
        if isinstance(frame, InterruptionFrame):
            self._cut = True  # before any await: a write racing the clear must not send
            self._next_due_ms = 0.0
            if passthrough is not None:
                passthrough.dropped()  # with pipecat's queued chunks, which it drops
            await self._call.cleared()
        elif isinstance(frame, PlaybackMarkerFrame | TTSStartedFrame):
            self._cut = False
        elif (
            isinstance(frame, G711OutputAudioFrame)
            and passthrough is not None
            and frame.g711_format is self._call.g711_format
        ):
            passthrough.brought(frame.g711)  # before pipecat chunks it
        await super().process_frame(frame, direction)

    async def write_transport_frame(self, frame: Frame) -> None:
        if isinstance(frame, PlaybackMarkerFrame):
            await self._call.utterance_began(frame.utterance_id)
        elif isinstance(frame, TTSStartedFrame) and frame.context_id:
            await self._call.utterance_began(frame.context_id)
        await super().write_transport_frame(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._cut:
            self._call.dropped(frame)
            return False
        if not await self._call.media(frame):
            return False
        # Paced after sending, like a sound card: the next chunk leaves when this one has played.
        duration_ms = len(frame.audio) / 2 / frame.sample_rate * 1000
        now = self._call.now_ms()
        self._next_due_ms = max(now, self._next_due_ms) + duration_ms
        await asyncio.sleep(max(0.0, self._next_due_ms - now) / 1000)
        return True

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._call.tick()

    async def _stop_ticking(self) -> None:
        if self._ticker is not None:
            await self.cancel_task(self._ticker)
            self._ticker = None


class PhoneCallOutput(ReportsPlayback, _StreamOutput):
    """The stream's output, reporting playback through the seam and recording what it sends."""

    def now_ms(self) -> float:
        return self._call.now_ms()

    def report_playback_to(self, sink: PlaybackSink) -> None:
        super().report_playback_to(sink)
        sink.reports_cut_positions(self._call.cut_report_ms)

    def audio_played(self, frame: OutputAudioRawFrame, started_ms: float) -> None:
        self._call.recording.bot_audio(frame.audio, frame.sample_rate, started_ms)


class PhoneCallTransport(BaseTransport):
    """A phone call's transport over one started media stream (see the module docstring).

    Args:
        websocket: the stream's socket, its ``start`` already read by ``stream``.
        stream: the stream's protocol state (started).
        record_audio: keep both sides' audio for ``call.wav``.
        silent_ms: a stream not heard from this long is gone.
        mark_interval_ms, confirm_within_ms: the mark tracker's settings.
        passthrough: carry the caller's G.711 to a brain that takes it, and the
            brain's G.711 to the caller, unchanged (the output then runs at 8 kHz).
        now_ms: the clock of its reports, recording and liveness.
    """

    def __init__(
        self,
        websocket: web.WebSocketResponse,
        stream: MediaStream,
        params: TransportParams | None = None,
        *,
        record_audio: bool = True,
        silent_ms: int = 2_000,
        mark_interval_ms: float = 100,
        confirm_within_ms: float = 1_000,
        passthrough: bool = False,
        now_ms: Callable[[], float] = monotonic_ms,
    ) -> None:
        super().__init__()
        params = params or call_params(out_rate=PHONE_RATE if passthrough else OUT_RATE)
        self.websocket = websocket
        self.stream = stream
        self.now_ms = now_ms
        self.marks = MarkTracker(interval_ms=mark_interval_ms, confirm_within_ms=confirm_within_ms)
        self.cut_report_ms = confirm_within_ms + CUT_REPORT_SLACK_MS
        self.recording = CallRecording(
            now_ms,
            in_sample_rate=params.audio_in_sample_rate or IN_RATE,
            out_sample_rate=params.audio_out_sample_rate or OUT_RATE,
            keep_audio=record_audio,
        )
        self.liveness = PeerLiveness(timeout_ms=silent_ms, connect_timeout_ms=silent_ms)
        self.liveness.opened(now_ms())
        self.liveness.connected(now_ms())  # the stream has started
        self.skipped: collections.Counter[str] = collections.Counter()  # malformed, by reason
        self.cuts_estimated = 0
        self._send_lock = asyncio.Lock()
        self._encoder: StreamResampler | None = None
        self.passthrough = G711Passthrough(stream.encoding) if passthrough else None
        self._input = PhoneCallInput(self, params, name=f"{self.name}#input")
        self._output = PhoneCallOutput(self, params, name=f"{self.name}#output")

    def input(self) -> PhoneCallInput:
        return self._input

    def output(self) -> PhoneCallOutput:
        return self._output

    @property
    def g711_format(self) -> AudioFormat | None:
        """The law the caller's audio passes through in, or None (see ``passthrough``)."""
        return self.stream.encoding.audio_format if self.passthrough is not None else None

    @property
    def label(self) -> str:
        """The stream in logs: ``twilio stream MZ...``."""
        return f"{self.stream.provider.value} stream {self.stream.stream_sid}"

    # -- what the provider sends --------------------------------------------------------

    async def receive(self, message: str | bytes) -> None:
        """One message from the stream's socket."""
        now = self.now_ms()
        event = self.stream.receive(message)
        if isinstance(event, MediaReceived):
            # Only the caller's media says the line is alive: it comes every 20 ms, silence
            # included, while marks keep coming back for as long as the bot's audio plays.
            self.liveness.heard(now)
            if event.track == INBOUND:
                await self._input.caller_audio(event.payload, now)
        elif isinstance(event, MarkEchoed):
            self._playout(self.marks.mark_echoed(event.name, now))
        elif isinstance(event, ClearAcknowledged):
            self._playout(self.marks.clear_acknowledged(now))
        elif isinstance(event, DtmfReceived):
            await self._input.key_pressed(event.digit)
        elif isinstance(event, StreamStopped):
            logger.info(f"{self.label} stopped")
            self.liveness.closed(now)
        elif isinstance(event, StreamErrored):
            logger.warning(f"{self.label}: the provider reports {event.code}: {event.detail}")
        elif isinstance(event, MessageMalformed):
            self._skipped(event)

    def socket_closed(self) -> None:
        """The stream's socket closed (either side)."""
        self.liveness.closed(self.now_ms())

    def tick(self) -> None:
        """The mark tracker's deadlines (the output calls this every 50 ms)."""
        self._playout(self.marks.tick(self.now_ms()))

    # -- what we send -------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Whether audio can still go to the caller (the stream neither stopped nor closed)."""
        return self.stream.state is StreamState.STREAMING and not self.websocket.closed

    async def utterance_began(self, key: str) -> None:
        if self.streaming:
            await self._send(self.stream.mark(self.marks.utterance_began(key, self.now_ms()).name))

    async def media(self, frame: OutputAudioRawFrame) -> bool:
        """Send one chunk of the bot's audio (and a mark when one is due); False if gone."""
        if not self.streaming:
            return False
        if self.passthrough is not None and frame.sample_rate == PHONE_RATE:
            payload = self.passthrough.chunk(frame.audio)
        else:
            if self._encoder is None or self._encoder.in_rate != frame.sample_rate:
                self._encoder = StreamResampler(frame.sample_rate, PHONE_RATE)
            payload = self.stream.encoding.encode(self._encoder.process(frame.audio))
        if not await self._send(self.stream.media(payload)):
            return False
        duration_ms = len(frame.audio) / 2 / frame.sample_rate * 1000
        mark = self.marks.media_sent(duration_ms, self.now_ms())
        if mark is not None:
            await self._send(self.stream.mark(mark.name))
        return True

    def dropped(self, frame: OutputAudioRawFrame) -> None:
        """A chunk of the bot's audio was dropped unsent (it came after a cut)."""
        if self.passthrough is not None and frame.sample_rate == PHONE_RATE:
            self.passthrough.skipped(frame.audio)

    async def cleared(self) -> None:
        """An interruption: the provider drops what it holds, and says where it stopped.

        Twilio and Telnyx return their pending marks at once, and the probe
        sent after the clear closes that burst; Plivo acknowledges the clear.
        """
        if not self.streaming or not await self._send(self.stream.clear()):
            return
        if self.stream.clear_confirmation is ClearConfirmation.ACKNOWLEDGED:
            self.marks.clear_sent(self.now_ms())
        else:
            await self._send(self.stream.mark(self.marks.cleared(self.now_ms()).name))

    async def _send(self, text: str) -> bool:
        try:
            async with self._send_lock:
                await self.websocket.send_str(text)
        except (ConnectionError, RuntimeError) as exc:  # closing under us
            logger.debug(f"{self.label}: send failed: {exc}")
            self.socket_closed()
            return False
        return True

    # -- what the marks say -------------------------------------------------------------

    def _playout(self, events: list[PlayoutEvent]) -> None:
        reports = self._output.playback_reports
        for event in events:
            if isinstance(event, PositionConfirmed):
                reports.position_confirmed(event.key, event.played_ms, event.at_ms)
            elif isinstance(event, CutConfirmed):
                reports.cut_position(event.key, event.played_ms, event.at_ms)
            elif isinstance(event, CutEstimated):
                self.cuts_estimated += 1
                logger.warning(
                    f"{self.label}: nothing came back after the clear; {event.key} "
                    f"is cut at an estimate ({event.played_ms:.0f} ms sent)"
                )
                reports.cut_position(event.key, event.played_ms, event.at_ms)
            elif isinstance(event, MarksLate):
                logger.warning(
                    f"{self.label}: no mark came back for {event.waited_ms:.0f} ms; "
                    "positions are the audio sent until one does"
                )
            elif isinstance(event, MarkIgnored):
                logger.debug(f"{self.label}: mark {event.name!r} ignored: {event.reason.value}")
            elif isinstance(event, AcknowledgmentIgnored):
                logger.debug(f"{self.label}: clear acknowledgment ignored: {event.reason.value}")

    def _skipped(self, event: MessageMalformed) -> None:
        self.skipped[event.reason.value] += 1
        count = self.skipped[event.reason.value]
        if count <= 3 or count % 100 == 0:  # a flood of garbage is not a flood of logs
            logger.warning(
                f"{self.label}: skipped a message "
                f"({event.reason.value}: {event.detail[:80]}; {count} so far)"
            )

    # What the call's instruments ask a transport (CaptureStamps, PlaybackReports).

    @property
    def captures(self) -> CaptureLog:
        """Caller frames by id, stamped when they arrived."""
        return self.recording.captures

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first bot chunk at or after ``since_ms`` left for the provider."""
        return self.recording.first_played_ms(since_ms)


TwilioCallTransport = PhoneCallTransport  # the name it first shipped under


async def close_quietly(websocket: web.WebSocketResponse) -> None:
    """Close the stream's socket once its call has ended."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(), 1.0)
