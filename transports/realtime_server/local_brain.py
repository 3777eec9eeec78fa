"""The local brain: Whisper STT -> Qwen LLM -> Piper/eSpeak TTS, streaming.

Replies come from the chained reply engine (:mod:`voxpipe.engines.reply`):
the LLM runs in a worker thread, its text is cut into pieces with the same
rule as the chained graph's TTS, and each piece is synthesised and sent at
once, so the first audio leaves after the first clause, not after the whole
reply. Cancelling the response stops generation between tokens.

It can also speculate: when the server's VAD hears a pause, the driver has
the pause's audio transcribed and asks for :meth:`LocalBrain.speculate`, the
reply that transcript would get, generated while the server waits out
``silence_duration_ms``. The driver keeps it (one per session) and hands it to
:meth:`LocalBrain.respond`, which replays it when the turn ended with the same
prompt, and cancels it otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from voxpipe.engines import LLMChunk
from voxpipe.engines.reply import (
    PieceSpoken,
    ReplyEngine,
    ReplyPrompt,
    TextGenerated,
    ToolCallRequested,
)
from voxpipe.engines.speculation import Speculation
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.effects import (
    AudioProduced,
    BrainOutput,
    BrainRequest,
    FunctionCallProduced,
    TextProduced,
)
from voxpipe.realtime_server.session_config import Modality
from voxpipe.speech_text import PieceRule

DEFAULT_MAX_TOKENS = 200
AUDIO_CHUNK_BYTES = codec.PROTOCOL_PCM_RATE * 2 // 10  # 100 ms


def reply_prompt(request: BrainRequest) -> ReplyPrompt:
    """The LLM prompt of a response request."""
    return ReplyPrompt(
        list(request.messages),
        list(request.tools),
        request.max_output_tokens or DEFAULT_MAX_TOKENS,
    )


class LocalBrain:
    """A :class:`~voxpipe.transports.realtime_server.brains.Brain` on the offline engines.

    ``first_words`` also ends a reply's first piece after that many words
    (see :class:`voxpipe.speech_text.PieceRule`; ``None``, the default: whole
    first clauses). Not the chained graph's 3 (``LIVE_FIRST_WORDS``): here the
    rest of a reply is generated and synthesised after the first piece, and
    behind a 3-word piece the reply fell silent for a moment (an eval's
    barge-in 2 s into a long answer found the bot not speaking, 1 run in 4).
    """

    def __init__(self, engines: Any, *, first_words: int | None = None) -> None:
        self.engines = engines
        self.replies = ReplyEngine(engines, rule=PieceRule(first_words=first_words))

    @property
    def speculations_used(self) -> int:
        """Replies replayed from a speculation, all sessions."""
        return self.replies.speculations_used

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
        return self.replies.speculate(reply_prompt(request))

    async def respond(
        self, request: BrainRequest, speculation: Speculation[LLMChunk] | None = None
    ) -> AsyncIterator[BrainOutput]:
        """Stream the LLM's reply, spoken piece by piece.

        A ``speculation`` made for the same prompt is replayed instead of
        generating again; one made for another prompt is cancelled.
        """
        speak = request.modality is not Modality.TEXT
        events = self.replies.stream(reply_prompt(request), speak=speak, speculation=speculation)
        try:
            async for event in events:
                if isinstance(event, ToolCallRequested):
                    call = event.call
                    yield FunctionCallProduced(call.name, call.arguments, call.call_id)
                elif isinstance(event, TextGenerated) and not speak:
                    yield TextProduced(event.text)
                elif isinstance(event, PieceSpoken):
                    for output in _spoken(event):
                        yield output
        finally:
            await events.aclose()  # an abandoned reply stops the model at its next token


def _spoken(piece: PieceSpoken) -> list[BrainOutput]:
    """A piece's words, then its audio at the protocol's rate in 100 ms chunks."""
    pcm = codec.resample(piece.pcm, piece.sample_rate, codec.PROTOCOL_PCM_RATE)
    audio = [pcm[i : i + AUDIO_CHUNK_BYTES] for i in range(0, len(pcm), AUDIO_CHUNK_BYTES)]
    return [TextProduced(piece.text + " "), *(AudioProduced(chunk) for chunk in audio)]
