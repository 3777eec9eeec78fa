"""Token counting for ``response.done`` usage, from audio durations and text.

OpenAI bills input audio at one token per 100 ms and output audio at one
token per 50 ms; text is counted with a GPT-style pre-tokenisation estimate
(words, numbers and punctuation, long words split every four characters).
Each response re-reads the whole context, and the unchanged prefix shared
with the previous response counts as cached, as prompt caching does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from openai.types.realtime import (
    RealtimeResponseUsage,
    RealtimeResponseUsageInputTokenDetails,
    RealtimeResponseUsageOutputTokenDetails,
)
from openai.types.realtime.realtime_response_usage_input_token_details import (
    CachedTokensDetails,
)

INPUT_AUDIO_MS_PER_TOKEN = 100
OUTPUT_AUDIO_MS_PER_TOKEN = 50
_PIECE = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]", re.UNICODE)


def text_tokens(text: str) -> int:
    """Estimated tokens in ``text``."""
    return sum(
        max(1, math.ceil(len(piece) / 4)) if piece.isalpha() else 1
        for piece in _PIECE.findall(text)
    )


def input_audio_tokens(audio_ms: int) -> int:
    """Tokens for ``audio_ms`` of input (user) audio."""
    return math.ceil(audio_ms / INPUT_AUDIO_MS_PER_TOKEN)


def output_audio_tokens(audio_ms: int) -> int:
    """Tokens for ``audio_ms`` of output (assistant) audio."""
    return math.ceil(audio_ms / OUTPUT_AUDIO_MS_PER_TOKEN)


@dataclass(frozen=True)
class ContextPiece:
    """One part of a response's input: instructions, tools, or one item version."""

    key: str
    text_tokens: int
    audio_tokens: int

    @property
    def tokens(self) -> int:
        """All tokens of the piece."""
        return self.text_tokens + self.audio_tokens


@dataclass(frozen=True)
class ContextTokens:
    """The input a response reads, piece by piece, in order."""

    pieces: tuple[ContextPiece, ...]

    @property
    def text_tokens(self) -> int:
        """Text tokens of the whole input."""
        return sum(p.text_tokens for p in self.pieces)

    @property
    def audio_tokens(self) -> int:
        """Audio tokens of the whole input."""
        return sum(p.audio_tokens for p in self.pieces)

    @property
    def tokens(self) -> int:
        """All input tokens."""
        return self.text_tokens + self.audio_tokens

    def cached_prefix(self, previous: ContextTokens | None) -> tuple[int, int]:
        """(text, audio) tokens of the leading pieces identical to ``previous``."""
        text = audio = 0
        for mine, theirs in zip(self.pieces, previous.pieces if previous else (), strict=False):
            if mine != theirs:
                break
            text += mine.text_tokens
            audio += mine.audio_tokens
        return text, audio


def build_usage(
    context: ContextTokens,
    previous: ContextTokens | None,
    *,
    output_text_tokens: int,
    output_audio_ms: int,
) -> RealtimeResponseUsage:
    """The ``usage`` object of ``response.done``."""
    cached_text, cached_audio = context.cached_prefix(previous)
    out_audio = output_audio_tokens(output_audio_ms)
    output = output_text_tokens + out_audio
    return RealtimeResponseUsage(
        input_tokens=context.tokens,
        output_tokens=output,
        total_tokens=context.tokens + output,
        input_token_details=RealtimeResponseUsageInputTokenDetails(
            text_tokens=context.text_tokens,
            audio_tokens=context.audio_tokens,
            image_tokens=0,
            cached_tokens=cached_text + cached_audio,
            cached_tokens_details=CachedTokensDetails(
                text_tokens=cached_text, audio_tokens=cached_audio, image_tokens=0
            ),
        ),
        output_token_details=RealtimeResponseUsageOutputTokenDetails(
            text_tokens=output_text_tokens, audio_tokens=out_audio
        ),
    )
