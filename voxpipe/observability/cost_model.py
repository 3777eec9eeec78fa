"""A model of how a Realtime call's cost grows with its length.

Every response re-reads the whole conversation, so without pruning the cost
of a call grows with the square of its length. The model walks a call turn by
turn: the user speaks, the model answers, and each answer is billed for the
instructions, every earlier item's audio or text (the re-read share partly at
the cached rate) and the new user audio, plus its own audio and transcript.

With voxpipe's rollover, the real :class:`~voxpipe.call.rollover.RolloverPolicy`
decides, from the same numbers it sees in a live call: every
``prune_every_turns`` user turns the items older than the last
``keep_verbatim_turns`` are replaced by a text summary, and a rollover (session
age or ``max_input_tokens``) starts a new session seeded with the summary and
the kept items as text. The default summariser is extractive (no model call,
so no cost); a changed prefix makes the next response's cache cold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from voxpipe.call.rollover import RolloverConfig, RolloverPolicy
from voxpipe.errors import ConfigError
from voxpipe.observability.prices import ModelPrices, TokenCounts

# ExtractiveSummariser keeps at most 2,000 characters: about 500 tokens.
DEFAULT_SUMMARY_TOKENS = 500


@dataclass(frozen=True)
class CallAssumptions:
    """What a modelled call looks like. Defaults: a busy support call."""

    turns_per_minute: float = 4.0
    user_seconds_per_turn: float = 6.0
    bot_seconds_per_turn: float = 7.0
    # Published: user audio is 1 token per 100 ms, assistant audio 1 per 50 ms.
    user_audio_tokens_per_s: float = 10.0
    bot_audio_tokens_per_s: float = 20.0
    # Transcripts (~2.5 words/s): the answer's is billed as text output, and
    # both become text items when a rollover carries turns over.
    bot_text_tokens_per_s: float = 3.0
    user_text_tokens_per_s: float = 3.0
    instructions_tokens: int = 500
    # Share of the re-read history billed at the cached-input price.
    cache_hit_fraction: float = 0.85
    summary_tokens: int = DEFAULT_SUMMARY_TOKENS

    def __post_init__(self) -> None:
        if self.turns_per_minute <= 0:
            raise ConfigError("turns_per_minute must be positive")
        if not 0.0 <= self.cache_hit_fraction <= 1.0:
            raise ConfigError("cache_hit_fraction must lie in [0, 1]")
        if (self.user_seconds_per_turn + self.bot_seconds_per_turn) * self.turns_per_minute > 60:
            raise ConfigError("a minute cannot hold that much speech: lower turns or seconds")


@dataclass(frozen=True)
class CallEstimate:
    """The modelled cost of one call length."""

    minutes: float
    responses: int
    prunes: int
    rollovers: int
    tokens: TokenCounts
    usd: Decimal


@dataclass(frozen=True)
class _Item:
    """One conversation item as the model re-reads it."""

    audio: int
    text: int


class _Call:
    """The conversation of the modelled call and what it has cost so far."""

    def __init__(self, a: CallAssumptions) -> None:
        self.a = a
        self.user = _Item(round(a.user_seconds_per_turn * a.user_audio_tokens_per_s), 0)
        self.bot = _Item(round(a.bot_seconds_per_turn * a.bot_audio_tokens_per_s), 0)
        self.user_text = round(a.user_seconds_per_turn * a.user_text_tokens_per_s)
        self.bot_text = round(a.bot_seconds_per_turn * a.bot_text_tokens_per_s)
        self.items: deque[_Item] = deque()
        self.summary = 0
        self.warm = False
        self.total = TokenCounts()

    def prune(self, keep: int, *, as_text: bool) -> None:
        """Replace all but the last ``keep`` items with the summary (a new prefix)."""
        while len(self.items) > keep:
            self.items.popleft()
            self.summary = self.a.summary_tokens
        if as_text:  # a new session cannot be seeded with the old audio
            self.items = deque(_Item(0, self._text_of(item)) for item in self.items)
        self.warm = False

    def respond(self) -> int:
        """Bill one user turn and its answer; returns the response's input tokens."""
        a = self.a
        reread_audio = sum(item.audio for item in self.items)
        reread_text = a.instructions_tokens + self.summary + sum(i.text for i in self.items)
        hit = a.cache_hit_fraction if self.warm else 0.0
        cached_audio, cached_text = round(reread_audio * hit), round(reread_text * hit)
        self.total = self.total + TokenCounts(
            audio_in=reread_audio - cached_audio + self.user.audio,
            cached_audio_in=cached_audio,
            text_in=reread_text - cached_text,
            cached_text_in=cached_text,
            audio_out=self.bot.audio,
            text_out=self.bot_text,
        )
        self.items.extend((self.user, self.bot))
        self.warm = True
        return reread_audio + reread_text + self.user.audio

    def _text_of(self, item: _Item) -> int:
        if item.audio == 0:
            return item.text
        return self.user_text if item is self.user else self.bot_text


def model_call(
    minutes: float,
    prices: ModelPrices,
    assumptions: CallAssumptions | None = None,
    rollover: RolloverConfig | None = None,
) -> CallEstimate:
    """Cost of a ``minutes``-long call: naive (``rollover=None``) or under voxpipe's
    rollover policy with ``rollover`` as its settings."""
    a = assumptions or CallAssumptions()
    call = _Call(a)
    responses = round(a.turns_per_minute * minutes)
    turn_ms = 60_000 / a.turns_per_minute
    policy = RolloverPolicy(rollover) if rollover is not None else None
    prunes = rollovers = 0
    if policy is not None:
        policy.on_session_started(0)
    for k in range(responses):
        if policy is not None:
            now_ms = round(k * turn_ms)
            if policy.check(now_ms, idle=True) is not None:
                call.prune(policy.config.keep_verbatim_turns, as_text=True)
                policy.on_session_started(now_ms)
                rollovers += 1
            if policy.on_user_turn() is not None:
                call.prune(policy.config.keep_verbatim_turns, as_text=False)
                prunes += 1
        input_tokens = call.respond()
        if policy is not None:
            policy.on_response_done(input_tokens)
    return CallEstimate(minutes, responses, prunes, rollovers, call.total, prices.cost(call.total))
