"""The local speech-to-text service: faster-whisper tiny.en on a VAD segment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pipecat.frames.frames import ErrorFrame, Frame, StartFrame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voxpipe.processors.local.engines import WhisperEngine, shared_stt


class LocalWhisperSTTService(SegmentedSTTService):
    """Transcribes each spoken segment with the process's shared Whisper engine."""

    def __init__(self, *, engine: WhisperEngine | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("settings", STTSettings(model="whisper-tiny.en", language=Language.EN))
        # Whisper tiny.en on a short segment on 2 CPU cores (measured p99).
        kwargs.setdefault("ttfs_p99_latency", 0.8)
        super().__init__(**kwargs)
        self._engine = engine
        self._listeners: list[Callable[[str], object]] = []

    def add_transcript_listener(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(text)`` with each segment's transcript as soon as it exists.

        The chained pipeline uses it to prefill the LLM's prompt during the
        end-of-turn wait; a listener must return at once (schedule, never block).
        """
        self._listeners.append(listener)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self._engine is None:
            self._engine = await shared_stt()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        engine = self._engine or await shared_stt()
        await self.start_processing_metrics()
        try:
            text = await asyncio.to_thread(engine.transcribe, audio, self.sample_rate)
        except Exception as exc:  # a model failure costs this segment, not the call
            yield ErrorFrame(f"local STT failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if text:
            for listener in self._listeners:
                listener(text)
            # A segment's transcript is final: say so, so the turn ends without
            # waiting out the STT safety timer.
            yield TranscriptionFrame(
                text, self._user_id, time_now_iso8601(), Language.EN, finalized=True
            )
