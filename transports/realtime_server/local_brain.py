"""The local brain: Whisper STT -> Qwen LLM -> Piper/eSpeak TTS, streaming.

The LLM runs in a worker thread and hands text to the event loop as it is
generated; each finished sentence is synthesised (off the loop) and its audio
sent at once, so the first audio leaves after the first sentence, not after
the whole reply. Cancelling the response stops generation between tokens.

It can also speculate: when the server's VAD hears a pause, the driver has
the pause's audio transcribed and asks for :meth:`LocalBrain.speculate`, the
reply that transcript would get, generated while the server waits out
``silence_duration_ms``. The driver keeps it (one per session) and hands it to
:meth:`LocalBrain.respond`, which replays it when the turn ended with the same
prompt, and cancels it otherwise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from voxpipe.engines import LLMChunk
from voxpipe.engines.in_thread import iterate_in_thread
from voxpipe.engines.speculation import Speculation, prompt_key
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.effects import (
    AudioProduced,
    BrainOutput,
    BrainRequest,
    FunctionCallProduced,
    TextProduced,
)
from voxpipe.realtime_server.session_config import Modality

DEFAULT_MAX_TOKENS = 200
AUDIO_CHUNK_BYTES = codec.PROTOCOL_PCM_RATE * 2 // 10  # 100 ms
_SENTENCE = re.compile(r"^(.+?[.!?;:])(\s+|$)", re.S)
_FIRST_CLAUSE = re.compile(r"^(.{16,}?[,.!?;:])(\s+|$)", re.S)


def split_sentences(
    buffer: str, *, first: bool = False, first_words: int | None = None
) -> tuple[list[str], str]:
    """Complete sentences at the start of ``buffer`` and the unfinished rest.

    With ``first`` (nothing spoken yet) a clause of 16 or more characters ending
    in a comma also counts, so the first audio leaves sooner; with
    ``first_words`` too, so do that many finished words with no punctuation.
    """
    sentences = []
    if first and (head := _first_piece(buffer, first_words)) is not None:
        sentences.append(buffer[:head].strip())
        buffer = buffer[head:]
    while (match := _SENTENCE.match(buffer)) and match.group(2):
        sentences.append(match.group(1).strip())
        buffer = buffer[match.end() :]
    return sentences, buffer


def _first_piece(buffer: str, first_words: int | None) -> int | None:
    """Where a reply's first piece ends: a long enough clause, or ``first_words`` words."""
    if (match := _FIRST_CLAUSE.match(buffer)) and match.group(2):
        return match.end()
    if not first_words or _SENTENCE.match(buffer):
        return None
    # Only finished words count: each is followed by whitespace.
    match = re.match(rf"^\s*(?:\S+\s+){{{first_words}}}", buffer)
    return match.end() if match else None


def request_key(request: BrainRequest) -> str:
    """What makes two requests the same reply: prompt, tools and output limit."""
    return f"{request.max_output_tokens}|{prompt_key(list(request.messages), list(request.tools))}"


class LocalBrain:
    """A :class:`~voxpipe.transports.realtime_server.brains.Brain` on the offline engines."""

    def __init__(self, engines: Any, *, first_words: int | None = None) -> None:
        self.engines = engines
        self.first_words = first_words
        self.speculations_used = 0  # replies replayed from a speculation, all sessions

    @classmethod
    async def load(cls, *, tts: str = "auto", first_words: int | None = None) -> LocalBrain:
        """Load the shared engines once per process (off the event loop)."""
        from voxpipe.engines import shared_engines

        return cls(await shared_engines(tts=tts), first_words=first_words)

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """Whisper's transcript of a user's audio item."""
        text: str = await asyncio.to_thread(self.engines.stt.transcribe, pcm16, sample_rate)
        return text

    def speculate(self, request: BrainRequest) -> Speculation[LLMChunk]:
        """Start generating the reply ``request`` would get (see the module docstring)."""
        return Speculation.start(request_key(request), self._generate(request))

    def _generate(self, request: BrainRequest) -> AsyncGenerator[LLMChunk, None]:
        return iterate_in_thread(
            lambda stop: self.engines.llm.stream_chat(
                list(request.messages),
                list(request.tools) or None,
                max_tokens=request.max_output_tokens or DEFAULT_MAX_TOKENS,
                stop=stop,
            )
        )

    async def respond(
        self, request: BrainRequest, speculation: Speculation[LLMChunk] | None = None
    ) -> AsyncIterator[BrainOutput]:
        """Stream the LLM's reply, spoken sentence by sentence.

        A ``speculation`` made for the same prompt is replayed instead of
        generating again; one made for another prompt is cancelled.
        """
        if speculation is not None and speculation.key == request_key(request):
            self.speculations_used += 1
            chunks: AsyncGenerator[LLMChunk, None] = speculation.replay()
        else:
            if speculation is not None:
                await speculation.cancel()
            chunks = self._generate(request)
        pending = ""
        spoke = False
        try:
            async for chunk in chunks:
                for call in chunk.tool_calls:
                    yield FunctionCallProduced(call.name, call.arguments, call.call_id)
                if request.modality is Modality.TEXT:
                    if chunk.text:
                        yield TextProduced(chunk.text)
                    continue
                sentences, pending = split_sentences(
                    pending + chunk.text, first=not spoke, first_words=self.first_words
                )
                for sentence in sentences:
                    spoke = True
                    async for output in self._speak(sentence):
                        yield output
            if pending.strip():
                async for output in self._speak(pending.strip()):
                    yield output
        finally:
            await chunks.aclose()  # an abandoned reply stops the model at its next token

    async def _speak(self, sentence: str) -> AsyncIterator[BrainOutput]:
        tts = self.engines.tts
        pcm = await asyncio.to_thread(lambda: b"".join(tts.synthesize(sentence)))
        pcm = codec.resample(pcm, tts.sample_rate, codec.PROTOCOL_PCM_RATE)
        yield TextProduced(sentence + " ")
        for start in range(0, len(pcm), AUDIO_CHUNK_BYTES):
            yield AudioProduced(pcm[start : start + AUDIO_CHUNK_BYTES])
