"""Rollover policy: when to move a call to a fresh session, and what to carry.

Provider sessions have a hard cap (15, then 30, then 60 minutes over the
Realtime API's life) and every response re-reads the whole conversation, so
long calls get slow and costly. This policy decides, from time and usage
passed in, when to roll over (before the cap, or when input tokens pass a
threshold), when to prune (replace old audio items with a text summary), and
what seeds the new session: a summary of older turns, the last K turns
verbatim, and tool state that lives outside the model.

Summaries come from a :class:`Summariser`; :class:`ExtractiveSummariser`
needs no model. A model-based summariser is asynchronous, so the driver runs
it on :meth:`SeedPlan.to_summarise` and builds the seed with
:meth:`SessionSeed.from_plan`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

from voxpipe.errors import ConfigError

MINUTE_MS = 60_000
KNOWN_SESSION_CAPS_MS = (15 * MINUTE_MS, 30 * MINUTE_MS, 60 * MINUTE_MS)


class Role(enum.Enum):
    """Who said a turn."""

    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class RolloverReason(enum.Enum):
    """Why the policy asked for a new session."""

    SESSION_AGE = "session_age"  # the provider's cap is near
    INPUT_TOKENS = "input_tokens"  # the conversation got too long
    FORCED = "forced"  # the cap is so near that we roll even mid-response


@dataclasses.dataclass(frozen=True)
class Turn:
    """One conversation item as the call remembers it (text or transcript)."""

    role: Role
    text: str
    item_id: str | None = None
    is_audio: bool = False


@dataclasses.dataclass(frozen=True)
class RolloverConfig:
    """Thresholds of the policy; the defaults leave a safe margin under a 60-minute cap."""

    session_cap_ms: int = 60 * MINUTE_MS
    margin_ms: int = 2 * MINUTE_MS  # roll between turns once inside this margin
    force_margin_ms: int = 30_000  # roll even mid-response once inside this one
    max_input_tokens: int = 20_000
    prune_every_turns: int = 10
    keep_verbatim_turns: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.force_margin_ms <= self.margin_ms < self.session_cap_ms:
            raise ConfigError("need 0 <= force_margin_ms <= margin_ms < session_cap_ms")
        if self.prune_every_turns < 1 or self.keep_verbatim_turns < 0:
            raise ConfigError("prune_every_turns must be >= 1 and keep_verbatim_turns >= 0")


@dataclasses.dataclass(frozen=True)
class RolloverDue:
    """Roll over now: open a new session seeded from the call's memory."""

    reason: RolloverReason
    session_age_ms: int
    input_tokens: int


@dataclasses.dataclass(frozen=True)
class PruneDue:
    """Replace the conversation items older than the last ``keep_verbatim_turns``."""

    user_turns: int


class RolloverPolicy:
    """Tracks one session's age and size; says when to roll over or prune.

    Feed it ``on_session_started`` (each new session), ``on_response_done``
    (with ``usage.input_tokens``: each response re-reads the whole
    conversation, so this is the conversation's size) and ``on_user_turn``;
    ask ``check`` at each turn boundary and at ``next_deadline_ms``.
    """

    def __init__(self, config: RolloverConfig | None = None) -> None:
        self.config = config or RolloverConfig()
        self._session_started_ms = 0
        self._input_tokens = 0
        self._turns_since_prune = 0
        self._user_turns = 0

    @property
    def input_tokens(self) -> int:
        """Input tokens of the latest response in this session."""
        return self._input_tokens

    def on_session_started(self, now_ms: int) -> None:
        """A new session (first, reconnect or rollover) is ready."""
        self._session_started_ms = now_ms
        self._input_tokens = 0
        self._turns_since_prune = 0

    def on_response_done(self, input_tokens: int) -> None:
        """Record ``usage.input_tokens`` of a finished response."""
        self._input_tokens = input_tokens

    def on_user_turn(self) -> PruneDue | None:
        """A user turn was committed; says when a prune is due."""
        self._user_turns += 1
        self._turns_since_prune += 1
        if self._turns_since_prune < self.config.prune_every_turns:
            return None
        self._turns_since_prune = 0
        return PruneDue(self._user_turns)

    def session_age_ms(self, now_ms: int) -> int:
        """How long the current session has been open."""
        return now_ms - self._session_started_ms

    def next_deadline_ms(self) -> int:
        """When a rollover becomes due by age alone (for the driver's timer)."""
        return self._session_started_ms + self.config.session_cap_ms - self.config.margin_ms

    def check(self, now_ms: int, *, idle: bool) -> RolloverDue | None:
        """Whether to roll over now; ``idle`` is True between turns (LISTENING).

        Rolling between turns keeps the switch unnoticed; only when the cap is
        within ``force_margin_ms`` does the policy roll mid-response, since the
        provider would end the session anyway.
        """
        age = self.session_age_ms(now_ms)
        cap = self.config.session_cap_ms
        if age >= cap - self.config.force_margin_ms:
            return RolloverDue(RolloverReason.FORCED, age, self._input_tokens)
        if not idle:
            return None
        if age >= cap - self.config.margin_ms:
            return RolloverDue(RolloverReason.SESSION_AGE, age, self._input_tokens)
        if self._input_tokens >= self.config.max_input_tokens:
            return RolloverDue(RolloverReason.INPUT_TOKENS, age, self._input_tokens)
        return None


class Summariser(Protocol):
    """Turns older turns (and the summary of even older ones) into one text."""

    def summarise(self, turns: Sequence[Turn], previous_summary: str | None) -> str:
        """Return a summary of ``previous_summary`` followed by ``turns``."""
        ...


@dataclasses.dataclass(frozen=True)
class ExtractiveSummariser:
    """A model-free summary: who said what, each turn cut to ``max_turn_chars``.

    When the whole exceeds ``max_chars`` the oldest lines go first, since the
    recent past matters most to the next answer.
    """

    max_turn_chars: int = 160
    max_chars: int = 2_000

    def summarise(self, turns: Sequence[Turn], previous_summary: str | None) -> str:
        """Return the summary text (empty when there is nothing to say)."""
        lines = [previous_summary] if previous_summary else []
        lines += [f"{t.role.value}: {self._cut(t.text)}" for t in turns if t.text.strip()]
        while len(lines) > 1 and len("\n".join(lines)) > self.max_chars:
            lines.pop(0)
        text = "\n".join(lines)
        return text[-self.max_chars :] if len(text) > self.max_chars else text

    def _cut(self, text: str) -> str:
        text = " ".join(text.split())
        if len(text) <= self.max_turn_chars:
            return text
        return text[: self.max_turn_chars - 1].rstrip() + "…"


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """How the call's turns split: older ones to summarise, recent ones kept verbatim."""

    to_summarise: tuple[Turn, ...]
    verbatim: tuple[Turn, ...]
    previous_summary: str | None

    @property
    def replaced_item_ids(self) -> tuple[str, ...]:
        """Item ids the summary replaces (to delete when pruning in place)."""
        return tuple(t.item_id for t in self.to_summarise if t.item_id is not None)


def plan_seed(
    turns: Sequence[Turn], keep_verbatim_turns: int, previous_summary: str | None = None
) -> SeedPlan:
    """Split ``turns``: the last ``keep_verbatim_turns`` stay word for word."""
    cut = max(0, len(turns) - keep_verbatim_turns)
    return SeedPlan(tuple(turns[:cut]), tuple(turns[cut:]), previous_summary)


@dataclasses.dataclass(frozen=True)
class SessionSeed:
    """What a new session starts with after a rollover or reconnect."""

    summary: str
    verbatim: tuple[Turn, ...]
    tool_state: Mapping[str, str]

    @classmethod
    def from_plan(
        cls, plan: SeedPlan, summary: str, tool_state: Mapping[str, str] | None = None
    ) -> SessionSeed:
        """Build a seed once the summary of ``plan.to_summarise`` is known."""
        return cls(summary, plan.verbatim, dict(tool_state or {}))

    def instructions(self, base_instructions: str) -> str:
        """``base_instructions`` plus the summary and tool state, for ``session.update``."""
        parts = [base_instructions.rstrip()]
        if self.summary:
            parts.append("Summary of the conversation so far:\n" + self.summary)
        if self.tool_state:
            state = "\n".join(f"- {k}: {v}" for k, v in sorted(self.tool_state.items()))
            parts.append("Known facts from tools (authoritative):\n" + state)
        return "\n\n".join(p for p in parts if p)


def build_seed(
    turns: Sequence[Turn],
    *,
    keep_verbatim_turns: int,
    summariser: Summariser | None = None,
    previous_summary: str | None = None,
    tool_state: Mapping[str, str] | None = None,
) -> SessionSeed:
    """Plan and summarise in one go, for synchronous summarisers."""
    plan = plan_seed(turns, keep_verbatim_turns, previous_summary)
    summariser = summariser or ExtractiveSummariser()
    summary = summariser.summarise(plan.to_summarise, plan.previous_summary)
    return SessionSeed.from_plan(plan, summary, tool_state)


class CallMemory:
    """The call's own record of the conversation, independent of any session.

    Older turns fold into a running summary on each prune, so memory stays
    bounded on long calls while every user turn is kept (in summary or verbatim).
    """

    def __init__(self, summariser: Summariser | None = None) -> None:
        self._summariser = summariser or ExtractiveSummariser()
        self._turns: list[Turn] = []
        self._summary: str | None = None
        self.tool_state: dict[str, str] = {}

    @property
    def turns(self) -> tuple[Turn, ...]:
        """Turns not yet folded into the summary, oldest first."""
        return tuple(self._turns)

    @property
    def summary(self) -> str | None:
        """The summary of every turn folded so far."""
        return self._summary

    def add(self, turn: Turn) -> None:
        """Record a finished turn (its final transcript)."""
        self._turns.append(turn)

    def prune(self, keep_verbatim_turns: int) -> SeedPlan:
        """Fold all but the last turns into the summary; returns what was folded.

        The driver deletes ``plan.replaced_item_ids`` from the live session and
        adds the summary as a text item, so old audio stops being re-read.
        """
        plan = plan_seed(self._turns, keep_verbatim_turns, self._summary)
        if plan.to_summarise:
            self._summary = self._summariser.summarise(plan.to_summarise, self._summary)
            self._turns = list(plan.verbatim)
        return plan

    def seed(self, keep_verbatim_turns: int) -> SessionSeed:
        """The seed for a new session: summary, last turns verbatim, tool state."""
        self.prune(keep_verbatim_turns)
        return SessionSeed(self._summary or "", tuple(self._turns), dict(self.tool_state))
