"""The local text-to-speech service: Piper (joe) or eSpeak NG, streamed as synthesised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from pipecat.frames.frames import ErrorFrame, Frame, StartFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService

from voxpipe.processors.local.engines import SpeechEngine, TTSEngineKind, shared_tts
from voxpipe.processors.local.text_aggregation import ClauseTextAggregator


class LocalTTSService(TTSService):
    """Speaks text with the process's shared local voice, sentence by sentence.

    With ``first_clause_words`` (the default, 4) a reply's first piece of speech
    is its first clause once that clause has so many words (see
    :class:`ClauseTextAggregator`), so the first audio does not wait for the
    whole first sentence; ``None`` keeps pipecat's sentence aggregation.
    ``first_words`` also cuts the first piece after that many words.
    """

    def __init__(
        self,
        *,
        voice: TTSEngineKind | str = TTSEngineKind.AUTO,
        engine: SpeechEngine | None = None,
        first_clause_words: int | None = 4,
        first_words: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        self._voice_kind = TTSEngineKind(voice)
        kwargs.setdefault(
            "settings", TTSSettings(model=None, voice=self._voice_kind.value, language="en")
        )
        super().__init__(**kwargs)
        self._engine = engine
        if first_clause_words is not None and self._text_aggregation_mode == (
            TextAggregationMode.SENTENCE
        ):
            # TTSService takes no aggregator argument; this is its own slot.
            self._text_aggregator = ClauseTextAggregator(
                min_words=first_clause_words,
                first_words=first_words,
                language=self._text_aggregator.language,
            )

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self._engine is None:
            self._engine = await shared_tts(self._voice_kind)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        engine = self._engine or await shared_tts(self._voice_kind)
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                _in_thread(engine.synthesize(text)),
                in_sample_rate=engine.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as exc:  # a failed sentence is reported, the call goes on
            yield ErrorFrame(f"local TTS failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull each chunk of a blocking generator in a worker thread."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk
