"""A model of how a Realtime call's cost grows with its length.

Every response re-reads the whole conversation, so without pruning the cost
of a call grows with the square of its length. The model walks a call turn by
turn: the user speaks, the model answers, and each answer is billed for the
instructions, every earlier turn's audio (the re-read share of it partly at
the cached rate) and the new user audio, plus its own audio and transcript.
With a :class:`RolloverSettings`, once the conversation holds more than
``after_audio_s`` of audio, voxpipe replaces the old turns with a text
summary (billed as one text request) and keeps only the latest turns.

All inputs are explicit, so the table printed by ``voxpipe cost`` can state
every assumption it rests on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from voxpipe.errors import ConfigError
from voxpipe.observability.prices import ModelPrices, TokenCounts


@dataclass(frozen=True)
class CallAssumptions:
    """What a modelled call looks like. Defaults: a busy support call."""

    turns_per_minute: float = 4.0
    user_seconds_per_turn: float = 6.0
    bot_seconds_per_turn: float = 7.0
    # Published: user audio is 1 token per 100 ms, assistant audio 1 per 50 ms.
    user_audio_tokens_per_s: float = 10.0
    bot_audio_tokens_per_s: float = 20.0
    # The spoken answer's transcript, billed as text output (~2.5 words/s).
    bot_text_tokens_per_s: float = 3.0
    user_text_tokens_per_s: float = 3.0
    instructions_tokens: int = 500
    # Share of the re-read history billed at the cached-input price.
    cache_hit_fraction: float = 0.85

    def __post_init__(self) -> None:
        if self.turns_per_minute <= 0:
            raise ConfigError("turns_per_minute must be positive")
        if not 0.0 <= self.cache_hit_fraction <= 1.0:
            raise ConfigError("cache_hit_fraction must lie in [0, 1]")
        if (self.user_seconds_per_turn + self.bot_seconds_per_turn) * self.turns_per_minute > 60:
            raise ConfigError("a minute cannot hold that much speech: lower turns or seconds")


@dataclass(frozen=True)
class RolloverSettings:
    """voxpipe's rollover: summarise and drop old audio once history exceeds a bound."""

    after_audio_s: float = 120.0
    keep_turns: int = 2
    summary_tokens: int = 300

    def __post_init__(self) -> None:
        if self.after_audio_s <= 0 or self.keep_turns < 0 or self.summary_tokens < 0:
            raise ConfigError("rollover needs after_audio_s > 0, keep_turns >= 0, summary >= 0")


@dataclass(frozen=True)
class CallEstimate:
    """The modelled cost of one call length."""

    minutes: float
    responses: int
    rollovers: int
    tokens: TokenCounts
    usd: Decimal


@dataclass(frozen=True)
class _Turn:
    user_audio: int
    bot_audio: int
    user_text: int
    bot_text: int
    audio_s: float


def _turn(a: CallAssumptions) -> _Turn:
    return _Turn(
        user_audio=round(a.user_seconds_per_turn * a.user_audio_tokens_per_s),
        bot_audio=round(a.bot_seconds_per_turn * a.bot_audio_tokens_per_s),
        user_text=round(a.user_seconds_per_turn * a.user_text_tokens_per_s),
        bot_text=round(a.bot_seconds_per_turn * a.bot_text_tokens_per_s),
        audio_s=a.user_seconds_per_turn + a.bot_seconds_per_turn,
    )


def _response(
    turn: _Turn, history: deque[_Turn], summary: int, a: CallAssumptions, warm: bool
) -> TokenCounts:
    """Tokens of one response: re-read history and text, new user audio, the answer."""
    reread_audio = sum(t.user_audio + t.bot_audio for t in history)
    reread_text = a.instructions_tokens + summary
    hit = a.cache_hit_fraction if warm else 0.0
    cached_audio = round(reread_audio * hit)
    cached_text = round(reread_text * hit)
    return TokenCounts(
        audio_in=reread_audio - cached_audio + turn.user_audio,
        cached_audio_in=cached_audio,
        text_in=reread_text - cached_text,
        cached_text_in=cached_text,
        audio_out=turn.bot_audio,
        text_out=turn.bot_text,
    )


def _summarise(history: deque[_Turn], keep: int, summary_tokens: int) -> TokenCounts:
    """Drop all but ``keep`` turns; bill a text request that reads their transcripts."""
    dropped = [history.popleft() for _ in range(max(len(history) - keep, 0))]
    read = sum(t.user_text + t.bot_text for t in dropped)
    return TokenCounts(text_in=read + summary_tokens, text_out=summary_tokens)


def model_call(
    minutes: float,
    prices: ModelPrices,
    assumptions: CallAssumptions | None = None,
    rollover: RolloverSettings | None = None,
) -> CallEstimate:
    """Cost of a ``minutes``-long call, naive (``rollover=None``) or with rollover."""
    a = assumptions or CallAssumptions()
    turn = _turn(a)
    responses = round(a.turns_per_minute * minutes)
    history: deque[_Turn] = deque()
    total, summary, rollovers, warm = TokenCounts(), 0, 0, False
    for _ in range(responses):
        held_s = sum(t.audio_s for t in history)
        if rollover is not None and held_s + turn.audio_s > rollover.after_audio_s:
            total = total + _summarise(history, rollover.keep_turns, rollover.summary_tokens)
            summary, warm = rollover.summary_tokens, False  # a new prefix: the cache is cold
            rollovers += 1
        total = total + _response(turn, history, summary, a, warm)
        history.append(turn)
        warm = True
    return CallEstimate(minutes, responses, rollovers, total, prices.cost(total))
