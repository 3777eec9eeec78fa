"""The file transport: a recording plays the caller, a WAV receives the bot.

Paced mode plays the caller's audio in real time, like a live microphone
(silence continues after the recording ends, as a real line would), and
writes the bot's audio at real-time pace, reporting what it played through
the playback seam (:class:`~voxpipe.playback.PlaybackReporter`) that
truncation relies on. Unpaced mode (batch) pushes the recording as fast as the
pipeline takes it and counts bot audio as played when written.

Both directions are recorded on one time origin, so :meth:`FileTransport.write_call_wav`
gives a two-channel call recording (caller left, bot right).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from pathlib import Path
from typing import Any

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStartedFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.observability.capture import CaptureLog
from voxpipe.playback import PlaybackLedger, PlaybackReports, PlaybackSink
from voxpipe.recording import Track
from voxpipe.transports.audio_file import DecodedAudio, load_audio, write_wav
from voxpipe.transports.recording import write_call_wav
from voxpipe.written_audio import AudioWritten, WrittenAudio

CHUNK_MS = 20


class MonotonicClock:
    """Milliseconds since the clock was made; the one place this transport reads time."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def now_ms(self) -> float:
        return (time.monotonic() - self._origin) * 1000

    async def sleep_until(self, t_ms: float) -> None:
        delay = (t_ms - self.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)


class FileInputTransport(BaseInputTransport):
    """Plays a decoded recording into the pipeline, 20 ms per frame."""

    def __init__(self, transport: FileTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport
        self._task: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._task is None:
            self._task = self.create_task(self._play(), name="file-input")

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_playing()
        await super().stop(frame)

    async def cancel(self, frame: Any) -> None:
        await self._stop_playing()
        await super().cancel(frame)

    async def _stop_playing(self) -> None:
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None

    async def _play(self) -> None:
        t = self._transport
        audio = t.load_input(self.sample_rate)
        step = self.sample_rate * 2 * CHUNK_MS // 1000
        pcm = audio.pcm16 + bytes(step - len(audio.pcm16) % step if len(audio.pcm16) % step else 0)
        t.input_started_ms = t.clock.now_ms()
        offset_ms = 0.0
        for i in range(0, len(pcm), step):
            await self._push(pcm[i : i + step], offset_ms)
            offset_ms += CHUNK_MS
        t.input_finished_ms = t.input_started_ms + offset_ms
        await t.call_input_finished()
        silence = bytes(step)
        tail_chunks = t.trailing_silence_ms // CHUNK_MS
        # A live line keeps sending silence; an unpaced batch sends enough for the VAD to stop.
        while t.paced or tail_chunks > 0:
            await self._push(silence, offset_ms)
            offset_ms += CHUNK_MS
            tail_chunks -= 1

    async def _push(self, chunk: bytes, offset_ms: float) -> None:
        t = self._transport
        if t.paced:
            await t.clock.sleep_until(t.input_started_ms + offset_ms)
        else:
            await asyncio.sleep(0)  # let the pipeline take the frame before the next
        # Paced, the chunk is captured at its slot on the call's time line; unpaced, when pushed.
        captured_ms = t.input_started_ms + offset_ms if t.paced else t.clock.now_ms()
        t.caller.write_at(offset_ms + t.input_started_ms, chunk)
        frame = InputAudioRawFrame(audio=chunk, sample_rate=self.sample_rate, num_channels=1)
        t.captures.append(frame.id, CHUNK_MS, captured_ms)
        await self.push_audio_frame(frame)


class FileOutputTransport(BaseOutputTransport):
    """Writes the bot's audio, paced like a sound card, and reports what it played.

    A :class:`~voxpipe.playback.PlaybackReporter`: the transport's own ledger
    (``FileTransport.playback``) and any sink attached with
    :meth:`report_playback_to` hear each utterance start, each chunk as it
    starts playing, and each cut.
    """

    def __init__(self, transport: FileTransport, params: TransportParams, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport
        self._reports = PlaybackReports()
        self._reports.attach(transport.playback)
        self._next_due_ms = 0.0
        self._virtual_ms = 0.0  # unpaced: bot audio is laid end to end
        self._epoch = 0
        self._flushing = False
        self._cut_utterance = False

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    def report_playback_to(self, sink: PlaybackSink) -> None:
        """Send every playback report from now on to ``sink`` as well."""
        self._reports.attach(sink)

    def now_ms(self) -> float:
        """The transport's clock: the call's time line paced, the bot's audio line unpaced."""
        return self._now()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if not isinstance(frame, InterruptionFrame):
            if isinstance(frame, PlaybackMarkerFrame | TTSStartedFrame):
                self._cut_utterance = False  # a new utterance may play
            elif isinstance(frame, OutputAudioRawFrame) and self._cut_utterance:
                # Pushed before the interruption but still in flight behind it:
                # the cut utterance's audio never plays.
                return
            await super().process_frame(frame, direction)
            return
        # Audio of the utterance being cut is refused until the next one begins.
        self._cut_utterance = self._transport.playback.current is not None
        self._epoch += 1  # a write waiting for its slot must not play
        self._reports.playback_cut(self._now())
        self._transport.interruptions_ms.append(self._now())
        # Until the base class has emptied its audio queue, a chunk the audio
        # task takes from it is the cancelled response's: it must not play.
        self._flushing = True
        try:
            await super().process_frame(frame, direction)
        finally:
            self._flushing = False

    async def write_transport_frame(self, frame: Frame) -> None:
        if isinstance(frame, PlaybackMarkerFrame):
            self._reports.utterance_began(frame.utterance_id, self._now())
        elif isinstance(frame, TTSStartedFrame) and frame.context_id:
            self._reports.utterance_began(frame.context_id, self._now())

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        t = self._transport
        duration_ms = len(frame.audio) / 2 / frame.sample_rate / frame.num_channels * 1000
        epoch = self._epoch
        if self._flushing or self._cut_utterance:
            return False
        if t.paced:
            await t.clock.sleep_until(self._next_due_ms)
            if epoch != self._epoch:
                return False
            now = t.clock.now_ms()
            self._next_due_ms = max(now, self._next_due_ms) + duration_ms
        else:
            now = self._virtual_ms
            self._virtual_ms += duration_ms
        self._reports.chunk_started(duration_ms, now)
        t.bot.write_at(now, frame.audio)
        t.written.append(AudioWritten(now, duration_ms, t.playback.current))
        return True

    def _now(self) -> float:
        return self._transport.clock.now_ms() if self._transport.paced else self._virtual_ms


class FileTransport(BaseTransport):
    """A simulated caller from a recording, and the bot's voice into a recording.

    Args:
        input_path: the caller's recording (WAV, FLAC, ...; any common rate and channels).
        paced: real-time pacing (a live call) or as fast as possible (batch).
        in_sample_rate: rate the pipeline wants the caller's audio at.
        out_sample_rate: rate the bot's audio is written at.
        trailing_silence_ms: silence after the recording in unpaced mode, so the VAD stops.
    """

    def __init__(
        self,
        input_path: Path | None = None,
        *,
        audio: DecodedAudio | None = None,
        paced: bool = True,
        in_sample_rate: int = 16_000,
        out_sample_rate: int = 24_000,
        trailing_silence_ms: int = 2_000,
        clock: MonotonicClock | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.input_path = input_path
        self.paced = paced
        self.trailing_silence_ms = trailing_silence_ms
        self.clock = clock or MonotonicClock()
        self.playback = PlaybackLedger()  # what this transport played, per utterance
        self.caller = Track(in_sample_rate)
        self.bot = Track(out_sample_rate)
        # Bounded: the last minute of chunks and the whole current utterance, totals kept.
        self.written = WrittenAudio()
        self.interruptions_ms: deque[float] = deque(maxlen=1_000)
        self.input_started_ms = 0.0
        self.input_finished_ms: float | None = None
        # Where each caller frame sits in the recording and when it was captured
        # (the latency instruments read it; the last 30 s of frames are kept).
        self.captures = CaptureLog()
        self._audio = audio
        if audio is None and input_path is not None:
            # Decode now: a bad file fails before any pipeline starts.
            self._audio = load_audio(input_path, in_sample_rate)
        params = TransportParams(
            audio_in_enabled=self._audio is not None,
            audio_in_sample_rate=in_sample_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=out_sample_rate,
            audio_out_auto_silence=False,
            audio_out_end_silence_secs=0,
            audio_out_10ms_chunks=2,
        )
        self._input = FileInputTransport(self, params, name=f"{self.name}#input")
        self._output = FileOutputTransport(self, params, name=f"{self.name}#output")
        self._register_event_handler("on_input_finished")

    def input(self) -> FileInputTransport:
        return self._input

    def output(self) -> FileOutputTransport:
        return self._output

    def load_input(self, sample_rate: int) -> DecodedAudio:
        if self._audio is None:
            return DecodedAudio(Path("-"), b"", sample_rate, sample_rate, 1)
        if self._audio.sample_rate != sample_rate:
            assert self.input_path is not None
            self._audio = load_audio(self.input_path, sample_rate)
        return self._audio

    def capture_ms(self, frame: InputAudioRawFrame) -> float | None:
        """When ``frame`` was captured on this transport's clock; None if not one of ours.

        Paced, that is the chunk's slot on the call's time line (as in ``call.wav``);
        unpaced, the moment it was pushed. Only the last 30 s of frames are kept.
        """
        chunk = self.captures.by_frame(frame.id)
        return None if chunk is None else chunk.captured_ms

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first bot chunk written at or after ``since_ms`` started playing.

        Paced, a chunk plays when it is written (this transport is the sound card).
        Unpaced, bot audio is laid on a virtual time line with no real playback, so
        the answer is None: unknown, not invented.
        """
        if not self.paced:
            return None
        index = bisect.bisect_left(self.written, since_ms, key=lambda w: w.at_ms)
        return self.written[index].at_ms if index < len(self.written) else None

    async def call_input_finished(self) -> None:
        await self._call_event_handler("on_input_finished")

    def bot_pcm(self) -> bytes:
        return self.bot.pcm()

    def write_bot_wav(self, path: Path) -> None:
        write_wav(path, self.bot.pcm(), self.bot.sample_rate)

    def write_call_wav(self, path: Path) -> None:
        """Caller (left) and bot (right) on one time line, at the bot's rate."""
        write_call_wav(path, self.caller, self.bot)
