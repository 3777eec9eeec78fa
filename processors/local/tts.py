"""The local text-to-speech service: Piper (joe) or eSpeak NG, streamed as synthesised.

It can also speak ahead: :meth:`LocalTTSService.presynthesize` starts
synthesising a piece of text before the pipeline asks for it (the chained
path does this with a speculated reply's first piece during the end-of-turn
wait). When the TTS is then asked for that exact text, the audio made so far
plays at once; text it is never asked for is dropped, so nothing is spoken
that did not come through the pipeline (and past the guardrail tap).

The voice can change during a call (a chained handoff to an agent with a
``voice`` of its own sends ``TTSUpdateSettingsFrame(delta=TTSSettings(voice=...))``):
the new voice speaks from the next response on (the next
``LLMFullResponseStartFrame`` or ``TTSSpeakFrame``), so what is left of the
response in progress (the old agent's transfer line) ends in the old voice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StartFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService

from voxpipe.engines import SpeechEngine, TTSEngineKind, shared_tts
from voxpipe.engines.in_thread import iterate_in_thread
from voxpipe.engines.speculation import Speculation
from voxpipe.processors.local.text_aggregation import ClauseTextAggregator
from voxpipe.speech_text import LIVE_FIRST_WORDS, PieceRule, SpeechTextSplitter

_AHEAD_KEPT = 4  # pieces synthesised ahead and not yet asked for (older ones are dropped)
FIRST_WORDS = LIVE_FIRST_WORDS  # a live reply's first piece ends after 3 words at the latest


def _piece_key(text: str) -> str:
    return " ".join(text.split())


class LocalTTSService(TTSService):
    """Speaks text with the process's shared local voice, piece by piece.

    Text is cut into pieces by voxpipe's one rule (:mod:`voxpipe.speech_text`,
    through :class:`ClauseTextAggregator`): with ``first_clause_words`` (the
    default, 4) a reply's first piece is its first clause once that clause has
    so many words, so the first audio does not wait for the whole first
    sentence; ``None`` speaks whole sentences only. ``first_words`` (the
    default, 3; ``None``: no such cut) also cuts the first piece after that
    many words: the LLM's first clause often is its whole first sentence, and
    on 2 cores a 3-word first piece brought the first audio 355 ms sooner at
    the median (``benchmarks/voice_to_voice.py``), at the price of a seam in
    the intonation after those words.
    """

    def __init__(
        self,
        *,
        voice: TTSEngineKind | str = TTSEngineKind.AUTO,
        engine: SpeechEngine | None = None,
        first_clause_words: int | None = 4,
        first_words: int | None = FIRST_WORDS,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        # pipecat drops an audio context (and what is queued in it) after this long without
        # audio. A local voice yields a piece only once it is synthesised, so on a loaded
        # machine 3 s (pipecat's default) was reached, and audio landing with the deadline
        # was dropped: a whole answer lost. The turn's end closes the context here (see
        # tts_process_generator); the idle deadline is only a safety net.
        kwargs.setdefault("stop_frame_timeout_s", 60.0)
        self._voice_kind = TTSEngineKind(voice)
        kwargs.setdefault(
            "settings", TTSSettings(model=None, voice=self._voice_kind.value, language="en")
        )
        super().__init__(**kwargs)
        self._engine = engine
        self._next_voice: TTSEngineKind | None = None  # speaks from the next response on
        self._piece_rule = PieceRule(clause_words=first_clause_words, first_words=first_words)
        self._next_rule: PieceRule | None = None  # the next response's rule (once)
        self._rule_in_use = False  # a response is being cut by a rule of its own
        self._ahead: dict[str, Speculation[bytes]] = {}
        self.ahead_used = 0  # pieces spoken from audio synthesised ahead
        if self._text_aggregation_mode == TextAggregationMode.SENTENCE:
            # TTSService takes no aggregator argument; this is its own slot. Its type is
            # inferred from pipecat's default, but only BaseTextAggregator's interface is used.
            self._text_aggregator = ClauseTextAggregator(  # type: ignore[assignment]
                self._piece_rule, language=self._text_aggregator.language
            )

    @property
    def voice(self) -> TTSEngineKind:
        """The local voice speaking now."""
        return self._voice_kind

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """A new ``voice`` (a :class:`TTSEngineKind` value) speaks from the next response on.

        An unknown voice is refused (``ValueError``) before anything changes.
        """
        voice = delta.voice
        kind = TTSEngineKind(voice) if isinstance(voice, str) else None
        changed = await super()._update_settings(delta)
        if kind is not None:
            self._next_voice = kind if kind is not self._voice_kind else None
        return changed

    def first_piece_words(self, words: int | None) -> None:
        """The next response's first piece ends after ``words`` words (once); None: as usual.

        A brain switch's re-asked answer is what the caller waits for in
        silence: its first piece of speech is synthesised as soon as that
        many words exist (and, got ahead on, while the LLM writes the rest),
        not once the first sentence ends. The same cut applies to
        :meth:`piece_splitter`, so the piece synthesised ahead is the one
        asked for.
        """
        self._next_rule = (
            None if words is None else dataclasses.replace(self._piece_rule, first_words=words)
        )

    def _aggregator(self) -> ClauseTextAggregator | None:
        aggregator = self._text_aggregator
        return aggregator if isinstance(aggregator, ClauseTextAggregator) else None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if self._next_voice is not None and isinstance(
            frame, LLMFullResponseStartFrame | TTSSpeakFrame
        ):
            await self._switch_voice(self._next_voice)
        aggregator = self._aggregator()
        starts = isinstance(frame, LLMFullResponseStartFrame)
        if aggregator is not None and starts and self._next_rule is not None:
            # This response is cut by the rule set for it, the next ones as usual.
            aggregator.rule, self._next_rule = self._next_rule, None
            self._rule_in_use = True
        await super().process_frame(frame, direction)
        if (
            aggregator is not None
            and self._rule_in_use
            and isinstance(frame, LLMFullResponseEndFrame | InterruptionFrame)
        ):
            aggregator.rule, self._rule_in_use = self._piece_rule, False

    async def _switch_voice(self, kind: TTSEngineKind) -> None:
        self._next_voice = None
        self._engine = await shared_tts(kind)
        self._voice_kind = kind
        for stale in self._ahead.values():  # synthesised ahead in the old voice
            await stale.cancel()
        self._ahead.clear()

    def piece_splitter(self) -> SpeechTextSplitter:
        """A fresh splitter cutting text exactly as this service cuts a reply's pieces."""
        rule = self._next_rule or self._piece_rule
        return SpeechTextSplitter(rule, language=self._text_aggregator.language)

    async def presynthesize(self, text: str) -> None:
        """Start synthesising ``text`` now, for when the pipeline asks for it."""
        key = _piece_key(text)
        if not key or key in self._ahead:
            return
        engine = self._engine or await shared_tts(self._voice_kind)
        while len(self._ahead) >= _AHEAD_KEPT:
            stale = self._ahead.pop(next(iter(self._ahead)))
            await stale.cancel()
        self._ahead[key] = Speculation.start(
            key, iterate_in_thread(lambda _stop: engine.synthesize(text))
        )

    def can_generate_metrics(self) -> bool:
        return True

    async def tts_process_generator(self, context_id: str, generator: Any) -> None:
        await super().tts_process_generator(context_id, generator)
        # Every piece is synthesised inline (run_tts yields its audio), so the turn's end
        # must close its context even when a piece made no audio; else the context waits
        # out the idle deadline above, holding every later one. A pipecat private name
        # (pinned 1.14.0; tests/processors/test_local_tts_deadline.py holds it to this).
        self._is_yielding_frames_synchronously = True

    async def preload(self) -> None:
        """Load the model now (:class:`~voxpipe.pipelines.session.CallSession` does so
        before the pipeline starts, so loading never counts against its start timeout)."""
        if self._engine is None:
            self._engine = await shared_tts(self._voice_kind)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.preload()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        engine = self._engine or await shared_tts(self._voice_kind)
        ahead = self._ahead.pop(_piece_key(text), None)
        chunks: AsyncIterator[bytes]
        if ahead is not None:
            self.ahead_used += 1
            chunks = ahead.replay()
        else:
            chunks = iterate_in_thread(lambda _stop: engine.synthesize(text))
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                chunks,
                in_sample_rate=engine.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as exc:  # a failed sentence is reported, the call goes on
            yield ErrorFrame(f"local TTS failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
