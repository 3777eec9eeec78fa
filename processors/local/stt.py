"""The local speech-to-text service: faster-whisper tiny.en on a VAD segment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService, STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voxpipe.engines import WhisperEngine, shared_stt
from voxpipe.processors.local.turn_clock import CallerSilenceVAD


@dataclass
class _EarlyTranscript:
    """A transcript begun at the caller's pause, before the VAD's stop made it a segment."""

    audio: bytes  # the segment's audio when the pause was heard
    starts: int  # speech starts seen then
    resumes: int  # pauses the caller had talked through then
    task: asyncio.Task[str]


class LocalWhisperSTTService(SegmentedSTTService):
    """Transcribes each spoken segment with the process's shared Whisper engine."""

    def __init__(self, *, engine: WhisperEngine | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("settings", STTSettings(model="whisper-tiny.en", language=Language.EN))
        # How long the turn waits for a segment's transcript after the VAD's stop.
        # A finalized transcript ends the wait at once, so this only matters when
        # Whisper is slow (a loaded machine): then a late transcript must still
        # join its turn, not arrive after it and interrupt the reply as a new one.
        # Whisper tiny.en takes 0.3-0.8 s on a segment on 2 idle cores.
        kwargs.setdefault("ttfs_p99_latency", 2.0)
        super().__init__(**kwargs)
        self._engine = engine
        self._listeners: list[Callable[[str], object]] = []
        self._speech_listeners: list[Callable[[], object]] = []
        self._speech_starts = 0  # VAD starts seen: tells a segment the caller went on
        # The turn's hold: while the caller speaks or a segment of theirs is still
        # owed a transcript, ``_keep_turn`` is called every ``_keep_every_secs``.
        self._keep_turn: Callable[[], object] | None = None
        self._keep_every_secs = 1.0
        self._caller_speaking = False
        self._segments_owed = 0
        self._keeping: asyncio.Task[None] | None = None
        self._pause_vad: CallerSilenceVAD | None = None
        self._early: _EarlyTranscript | None = None
        self.early_used = 0  # segments whose transcript was begun at the pause (a head start)

    def add_transcript_listener(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(text)`` with each segment's transcript as soon as it exists.

        The chained pipeline uses it to prefill the LLM's prompt during the
        end-of-turn wait; a listener must return at once (schedule, never block).
        """
        self._listeners.append(listener)

    def add_speech_started_listener(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` when the VAD hears the caller start (or resume) speaking.

        The chained pipeline uses it to drop a reply speculated on words the
        caller is now adding to; a listener must return at once.
        """
        self._speech_listeners.append(listener)

    def transcribe_at_pauses(self, vad: CallerSilenceVAD) -> None:
        """Begin each segment's transcript when ``vad`` hears the caller pause.

        ``vad`` (the user aggregator's, built with ``pause_after_ms``) tells of
        a pause in mid-speech before its stop is said (``stop_secs`` later):
        the audio so far is transcribed from there, and when the stop comes
        with nothing said since, that transcript is the segment's. It is ready
        ``stop_secs - pause_after_ms`` sooner. When the caller talks on, it is
        dropped and the segment transcribed as usual (Whisper did the work twice).
        """
        self._pause_vad = vad
        vad.add_pause_listener(self._pause_heard)

    def _pause_heard(self) -> None:
        if not self._caller_speaking or not self.is_usable or self._pause_vad is None:
            return
        # pipecat's segment buffer (pinned 1.14.0): the audio since the VAD's start, with its
        # pre-roll; the stop hands the same bytes plus more (quiet) audio to run_stt.
        audio = bytes(self._audio_buffer)
        self._drop_early()  # a pause the caller talked through
        task = asyncio.get_running_loop().create_task(
            self.transcribe_segment(audio + self._trailing_silence())
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, never lost
        self._early = _EarlyTranscript(audio, self._speech_starts, self._pause_vad.resumes, task)

    def _drop_early(self) -> None:
        if self._early is not None:
            self._early.task.cancel()  # Whisper's thread finishes it; nobody waits for it
            self._early = None

    def _early_for(self, audio: bytes) -> asyncio.Task[str] | None:
        """The transcript begun at the pause that ended ``audio``'s speech, if it is that."""
        early, self._early = self._early, None
        if early is None or self._pause_vad is None:
            return None
        same = (
            early.starts == self._speech_starts
            and early.resumes == self._pause_vad.resumes
            and audio.startswith(early.audio)
        )
        if not same:
            self._early = early
            self._drop_early()
            return None
        return early.task

    def hold_turns(self, keep: Callable[[], object], *, every_secs: float = 1.0) -> None:
        """Call ``keep()`` every ``every_secs`` while the caller's words are still coming.

        That is from the VAD's start until the segment's transcript has been
        pushed. The chained pipeline feeds the user turn's watchdog with it
        (:func:`~voxpipe.processors.local.turn_clock.hold_turn_open`): Whisper on
        a loaded machine can take longer than the watchdog's 5 s, and a turn it
        ends before the transcript is empty, which pipecat answers with a
        "please repeat" request to the LLM before the late transcript asks again.
        """
        self._keep_turn, self._keep_every_secs = keep, every_secs

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_starts += 1
            self._drop_early()
            self._caller_speaking = True
            self._keep_holding()
            for listener in self._speech_listeners:
                listener()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._caller_speaking = False
            if self.is_usable:  # SegmentedSTTService queues a segment only then
                self._segments_owed += 1
        await super().process_frame(frame, direction)

    def _keep_holding(self) -> None:
        if self._keep_turn is not None and self._keeping is None:
            self._keeping = self.create_task(self._hold(), "hold_turn")

    async def _hold(self) -> None:
        try:
            while self._caller_speaking or self._segments_owed > 0:
                if self._keep_turn is not None:
                    self._keep_turn()
                await asyncio.sleep(self._keep_every_secs)
        finally:
            self._keeping = None

    async def _stop_holding(self) -> None:
        self._caller_speaking, self._segments_owed = False, 0
        if (task := self._keeping) is not None:
            await self.cancel_task(task)
            self._keeping = None

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        # SegmentedSTTService.push_frame marks every transcript final, which is all
        # it does; a segment the caller talked past must stay non-final (run_stt).
        await STTService.push_frame(self, frame, direction)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def preload(self) -> None:
        """Load the model now (:class:`~voxpipe.pipelines.session.CallSession` does so
        before the pipeline starts, so loading never counts against its start timeout)."""
        if self._engine is None:
            self._engine = await shared_stt()

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.preload()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)  # transcribes the queued segments first
        await self._stop_holding()
        self._drop_early()  # a pause the call ended in: no segment will ask for it

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_holding()
        self._drop_early()
        await super().cancel(frame)

    async def transcribe_segment(self, audio: bytes) -> str:
        """One segment's transcript (the chained slot's fallback hands it between engines)."""
        engine = self._engine or await shared_stt()
        text: str = await asyncio.to_thread(engine.transcribe, audio, self.sample_rate)
        return text

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        try:
            async for frame in self._transcript(audio):
                yield frame
        finally:
            # The transcript (if any) is pushed by now: the turn's hold may end.
            self._segments_owed = max(self._segments_owed - 1, 0)

    async def _transcript(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        starts = self._speech_starts
        await self.start_processing_metrics()
        try:
            early = self._early_for(audio)
            if early is not None:
                text = await early
                self.early_used += 1
            else:
                text = await self.transcribe_segment(audio)
        except Exception as exc:  # a model failure costs this segment, not the call
            yield ErrorFrame(f"local STT failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if text:
            for listener in self._listeners:
                listener(text)
            # A segment's transcript is final for the turn unless the caller started
            # speaking again while it was transcribed: then more is coming, and a
            # "final" here would let the turn end without the next segment's words.
            final = self._speech_starts == starts
            yield TranscriptionFrame(
                text, self._user_id, time_now_iso8601(), Language.EN, finalized=final
            )
