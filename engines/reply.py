"""The streamed chained reply on the shared engines: LLM tokens -> pieces of speech -> audio.

One engine for every chained reply outside the pipecat graph: ``voxpipe
batch`` (:func:`run_turn`: a whole recording is one turn) and the embedded
Realtime server's local brain. The LLM runs in a worker thread; its text is
cut with :class:`voxpipe.speech_text.SpeechTextSplitter` (the graph's TTS cuts
with the same rule) and each piece is synthesised as soon as it is cut, so the
first audio comes from the first clause, not from the whole reply. Tool calls
pass through as they come.

Leaving the event stream early (an interruption, a cancelled task) stops the
model at its next token. A reply started before the turn ended
(:meth:`ReplyEngine.speculate`) is replayed when the turn ends with the same
prompt, and cancelled otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from voxpipe.engines import LocalEngines, ToolCall
from voxpipe.engines.in_thread import iterate_in_thread
from voxpipe.engines.llm import LLMChunk
from voxpipe.engines.speculation import Speculation, prompt_key
from voxpipe.speech_text import PieceRule, SpeechTextSplitter

Clock = Callable[[], float]  # seconds, monotonic


@dataclass(frozen=True)
class ReplyPrompt:
    """What the LLM is asked: the chat so far, the tools it may call, an output limit."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 200

    @property
    def key(self) -> str:
        """What makes two prompts the same reply: messages, tools and limit, whitespace aside."""
        return f"{self.max_tokens}|{prompt_key(self.messages, self.tools)}"


@dataclass(frozen=True)
class TextGenerated:
    """The model wrote ``text`` (every delta, spoken or not)."""

    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    """The model asked for a tool call."""

    call: ToolCall


@dataclass(frozen=True)
class PieceSpoken:
    """One piece of the reply, synthesised: its text and its PCM16 mono audio."""

    text: str
    pcm: bytes
    sample_rate: int


ReplyEvent = TextGenerated | ToolCallRequested | PieceSpoken


class Stage(enum.Enum):
    """A stage of a turn, named as its timing appears in ``voxpipe batch``'s results."""

    STT = "stt_ms"
    LLM_FIRST_TOKEN = "llm_first_token_ms"
    LLM_FIRST_PIECE = "llm_first_piece_ms"
    LLM_DONE = "llm_done_ms"
    FIRST_AUDIO = "first_audio_ms"
    TTS_DONE = "tts_done_ms"
    TOTAL = "total_ms"


class StageTimes:
    """Milliseconds from the start of a turn at which each stage first happened."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self._marks: dict[Stage, float] = {}

    def mark(self, stage: Stage) -> None:
        """Record ``stage`` now, unless it was recorded already."""
        if stage not in self._marks:
            self._marks[stage] = round((self._clock() - self._start) * 1000, 1)

    def as_dict(self) -> dict[str, float]:
        return {stage.value: ms for stage, ms in self._marks.items()}


@dataclass(frozen=True)
class _PieceCut:
    text: str


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_Cut = TextGenerated | ToolCallRequested | _PieceCut | _Failed | None  # None: the reply ended


class ReplyEngine:
    """Streams chained replies on one set of engines, cutting pieces with one rule."""

    def __init__(
        self,
        engines: LocalEngines,
        *,
        rule: PieceRule | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.engines = engines
        self.rule = rule or PieceRule()
        self.clock = clock
        self.speculations_used = 0  # replies replayed from a speculation

    def generate(self, prompt: ReplyPrompt) -> AsyncGenerator[LLMChunk, None]:
        """The model's chunks for ``prompt``; closing the generator stops the model."""
        return iterate_in_thread(
            lambda stop: self.engines.llm.stream_chat(
                prompt.messages, prompt.tools or None, max_tokens=prompt.max_tokens, stop=stop
            )
        )

    def speculate(self, prompt: ReplyPrompt) -> Speculation[LLMChunk]:
        """Start generating the reply to ``prompt`` before it is asked for."""
        return Speculation.start(prompt.key, self.generate(prompt))

    async def stream(
        self,
        prompt: ReplyPrompt,
        *,
        speak: bool = True,
        speculation: Speculation[LLMChunk] | None = None,
        times: StageTimes | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """The reply's events in order; with ``speak``, each piece as soon as it is synthesised.

        A ``speculation`` made for this prompt is replayed instead of
        generating again; one made for another prompt is cancelled.
        """
        times = times or StageTimes(self.clock)
        chunks = await self._chunks(prompt, speculation)
        cut: asyncio.Queue[_Cut] = asyncio.Queue()
        reader = asyncio.create_task(self._read(chunks, speak, cut, times))
        try:
            while (item := await cut.get()) is not None:
                if isinstance(item, _Failed):
                    raise item.error
                if isinstance(item, _PieceCut):
                    yield await self._speak(item.text, times)
                else:
                    yield item
            times.mark(Stage.TTS_DONE)
        finally:
            reader.cancel()  # an abandoned reply stops the model at its next token
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if speculation is not None:
                await speculation.cancel()  # in case its replay never started

    async def _chunks(
        self, prompt: ReplyPrompt, speculation: Speculation[LLMChunk] | None
    ) -> AsyncGenerator[LLMChunk, None]:
        if speculation is not None and speculation.key == prompt.key:
            self.speculations_used += 1
            return speculation.replay()
        if speculation is not None:
            await speculation.cancel()  # frees the model before the real reply needs it
        return self.generate(prompt)

    async def _read(
        self,
        chunks: AsyncGenerator[LLMChunk, None],
        speak: bool,
        cut: asyncio.Queue[_Cut],
        times: StageTimes,
    ) -> None:
        """LLM chunks in, events and pieces to speak out, as fast as the model writes."""
        splitter = SpeechTextSplitter(self.rule)
        try:
            async for chunk in chunks:
                for call in chunk.tool_calls:
                    cut.put_nowait(ToolCallRequested(call))
                if not chunk.text:
                    continue
                times.mark(Stage.LLM_FIRST_TOKEN)
                cut.put_nowait(TextGenerated(chunk.text))
                for piece in splitter.feed(chunk.text) if speak else ():
                    times.mark(Stage.LLM_FIRST_PIECE)
                    cut.put_nowait(_PieceCut(piece))
            times.mark(Stage.LLM_DONE)
            if speak and (rest := splitter.finish()) is not None:
                times.mark(Stage.LLM_FIRST_PIECE)
                cut.put_nowait(_PieceCut(rest))
            cut.put_nowait(None)
        except Exception as exc:  # re-raised where the events are read
            cut.put_nowait(_Failed(exc))
        finally:
            await chunks.aclose()

    async def _speak(self, text: str, times: StageTimes) -> PieceSpoken:
        tts = self.engines.tts
        pcm = await asyncio.to_thread(lambda: b"".join(tts.synthesize(text)))
        if pcm:
            times.mark(Stage.FIRST_AUDIO)
        return PieceSpoken(text, pcm, tts.sample_rate)


@dataclass
class TurnResult:
    """What was heard, what was said back, and how long each stage took (ms)."""

    transcript: str
    reply: str
    reply_pcm: bytes
    reply_rate: int
    timings: dict[str, float] = field(default_factory=dict)


async def run_turn(
    engines: LocalEngines,
    pcm16_16k: bytes,
    *,
    instructions: str,
    history: list[dict[str, Any]] | None = None,
    max_tokens: int = 120,
    rule: PieceRule | None = None,
    clock: Clock = time.perf_counter,
) -> TurnResult:
    """Transcribe, answer and speak one utterance; timings are from the call's start."""
    times = StageTimes(clock)
    transcript = await asyncio.to_thread(engines.stt.transcribe, pcm16_16k, 16_000)
    times.mark(Stage.STT)
    if not transcript:
        return TurnResult("", "", b"", engines.tts.sample_rate, times.as_dict())
    messages = [
        {"role": "system", "content": instructions},
        *(history or []),
        {"role": "user", "content": transcript},
    ]
    text: list[str] = []
    audio = bytearray()
    replies = ReplyEngine(engines, rule=rule, clock=clock)
    async for event in replies.stream(ReplyPrompt(messages, max_tokens=max_tokens), times=times):
        if isinstance(event, TextGenerated):
            text.append(event.text)
        elif isinstance(event, PieceSpoken):
            audio += event.pcm
    times.mark(Stage.TOTAL)
    return TurnResult(
        transcript, "".join(text).strip(), bytes(audio), engines.tts.sample_rate, times.as_dict()
    )
