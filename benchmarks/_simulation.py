"""A simulated long call at the policy level, for ``benchmarks/rollover.py``.

No audio, no sockets: a call is a sequence of user and bot turns on a
synthetic clock. The real :class:`~voxpipe.call.rollover.RolloverPolicy` and
:class:`~voxpipe.call.rollover.CallMemory` decide when to prune and roll over
and build each seed; this module only counts: sessions, rollovers, input
tokens per session (every response re-reads the whole context), user turns
buffered during a switch or lost, and the bot-audio gap a switch causes.

The baseline in the same run is one session with neither pruning nor
rollover; it hits the provider's hard cap and loses its context there.
"""

from __future__ import annotations

import dataclasses
import math

from voxpipe.call.rollover import (
    MINUTE_MS,
    CallMemory,
    Role,
    RolloverConfig,
    RolloverPolicy,
    RolloverReason,
    Turn,
)

NEVER = 10**15  # a threshold no simulated call reaches


@dataclasses.dataclass(frozen=True)
class CallProfile:
    """The shape of the simulated call (defaults: a busy 60-minute support call)."""

    duration_ms: int = 60 * MINUTE_MS
    turn_period_ms: int = 20_000  # one user turn and one bot answer per period
    user_speech_ms: int = 4_000
    bot_speech_ms: int = 7_000
    response_latency_ms: int = 800
    audio_in_tokens_per_s: float = 10.0  # user audio: about 1 token per 100 ms
    audio_out_tokens_per_s: float = 20.0  # bot audio: about 1 token per 50 ms
    instructions_tokens: int = 600
    words_per_turn: int = 18
    switch_ms: int = 700  # open a new session and seed it
    buffer_ms: int = 15_000  # user audio the driver buffers during a switch


@dataclasses.dataclass(frozen=True)
class SessionStats:
    """One provider session of the simulated call."""

    index: int
    started_ms: int
    ended_ms: int
    responses: int
    peak_input_tokens: int
    total_input_tokens: int
    ended_by: RolloverReason | None  # None: the call ended in this session


@dataclasses.dataclass(frozen=True)
class SimulationReport:
    """What a simulated call did."""

    sessions: tuple[SessionStats, ...]
    prunes: int
    user_turns: int
    user_turns_buffered: int  # started during a switch, delivered after it
    user_turns_lost: int
    context_losses: int  # sessions that ended at the hard cap, context gone
    max_bot_audio_gap_ms: int  # extra silence a switch put before or inside a reply

    @property
    def rollovers(self) -> int:
        """Sessions ended by the policy (not by the call's end or the cap)."""
        return sum(s.ended_by is not None for s in self.sessions)

    @property
    def total_input_tokens(self) -> int:
        """Input tokens billed over the whole call."""
        return sum(s.total_input_tokens for s in self.sessions)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures, for the benchmark's output file."""
        sessions = [
            {**dataclasses.asdict(s), "ended_by": s.ended_by.value if s.ended_by else None}
            for s in self.sessions
        ]
        return {
            "rollovers": self.rollovers,
            "prunes": self.prunes,
            "user_turns": self.user_turns,
            "user_turns_buffered": self.user_turns_buffered,
            "user_turns_lost": self.user_turns_lost,
            "context_losses": self.context_losses,
            "max_bot_audio_gap_ms": self.max_bot_audio_gap_ms,
            "total_input_tokens": self.total_input_tokens,
            "sessions": sessions,
        }


def estimate_tokens(text: str) -> int:
    """Rough text token count (4 characters a token), for seeds and summaries."""
    return math.ceil(len(text) / 4)


class _Sim:
    def __init__(self, config: RolloverConfig, profile: CallProfile, *, baseline: bool) -> None:
        self.cfg, self.p, self.baseline = config, profile, baseline
        self.policy = RolloverPolicy(config)
        self.memory = CallMemory()
        self.sessions: list[SessionStats] = []
        self.items: list[int] = []  # token cost of each live conversation item
        self.summary_tokens = 0
        self.started_ms = self.switch_end_ms = 0
        self.responses = self.peak = self.total = 0
        self.prunes = self.buffered = self.lost = self.context_losses = self.max_gap = 0
        self.policy.on_session_started(0)

    def context_tokens(self) -> int:
        return self.p.instructions_tokens + self.summary_tokens + sum(self.items)

    def end_session(self, now_ms: int, reason: RolloverReason | None) -> None:
        self.sessions.append(
            SessionStats(
                len(self.sessions),
                self.started_ms,
                now_ms,
                self.responses,
                self.peak,
                self.total,
                reason,
            )
        )
        self.started_ms, self.responses, self.peak, self.total = now_ms, 0, 0, 0

    def roll_over(self, now_ms: int, reason: RolloverReason) -> None:
        self.end_session(now_ms, reason)
        seed = self.memory.seed(self.cfg.keep_verbatim_turns)
        self.summary_tokens = estimate_tokens(seed.summary)
        # Verbatim turns are re-sent as text: audio cannot be seeded.
        self.items = [estimate_tokens(t.text) for t in seed.verbatim]
        self.switch_end_ms = now_ms + self.p.switch_ms
        self.policy.on_session_started(self.switch_end_ms)

    def hit_cap(self, now_ms: int) -> None:
        """The baseline's session expires: a new one starts with no context."""
        self.end_session(now_ms, None)
        self.context_losses += 1
        self.items, self.summary_tokens = [], 0
        self.switch_end_ms = now_ms + self.p.switch_ms
        self.policy.on_session_started(self.switch_end_ms)

    def check(self, now_ms: int, *, idle: bool) -> bool:
        if self.baseline:
            if self.policy.session_age_ms(now_ms) >= self.cfg.session_cap_ms:
                self.hit_cap(now_ms)
                return True
            return False
        due = self.policy.check(now_ms, idle=idle)
        if due is not None:
            self.roll_over(now_ms, due.reason)
        return due is not None

    def user_turn(self, k: int, start_ms: int) -> int:
        """Play turn ``k``; returns when the bot finished speaking."""
        p = self.p
        user_end = start_ms + p.user_speech_ms
        if start_ms < self.switch_end_ms:
            if self.switch_end_ms - start_ms > p.buffer_ms:
                self.lost += 1
                return user_end
            self.buffered += 1
        words = " ".join(f"w{k}_{i}" for i in range(p.words_per_turn))
        self.memory.add(Turn(Role.USER, f"user turn {k}: {words}", f"u{k}", True))
        self.items.append(round(p.user_speech_ms / 1000 * p.audio_in_tokens_per_s))
        if not self.baseline and self.policy.on_user_turn() is not None:
            self.prune()
        reply_at = max(user_end, self.switch_end_ms) + p.response_latency_ms
        self.max_gap = max(self.max_gap, reply_at - (user_end + p.response_latency_ms))
        return self.respond(k, reply_at)

    def respond(self, k: int, reply_at: int) -> int:
        p = self.p
        if self.check(reply_at, idle=False):  # a forced rollover cuts in before the reply
            self.max_gap = max(self.max_gap, p.switch_ms)
            reply_at = self.switch_end_ms + p.response_latency_ms
        context = self.context_tokens()
        self.responses += 1
        self.peak, self.total = max(self.peak, context), self.total + context
        self.policy.on_response_done(context)
        self.memory.add(Turn(Role.ASSISTANT, f"bot turn {k}", f"b{k}", True))
        self.items.append(round(p.bot_speech_ms / 1000 * p.audio_out_tokens_per_s))
        return reply_at + p.bot_speech_ms

    def prune(self) -> None:
        self.memory.prune(self.cfg.keep_verbatim_turns)
        self.summary_tokens = estimate_tokens(self.memory.summary or "")
        self.items = (
            self.items[-self.cfg.keep_verbatim_turns :] if self.cfg.keep_verbatim_turns else []
        )
        self.prunes += 1

    def run(self) -> SimulationReport:
        p = self.p
        turns = p.duration_ms // p.turn_period_ms
        idle_since = 0
        for k in range(turns):
            start = k * p.turn_period_ms
            # Between turns the call is idle: the policy may roll over at its
            # deadline if that falls in the pause, else when the pause ends.
            deadline = self.policy.next_deadline_ms()
            self.check(start if deadline >= start else max(deadline, idle_since), idle=True)
            idle_since = self.user_turn(k, start)
        self.end_session(p.duration_ms, None)
        return SimulationReport(
            tuple(self.sessions),
            self.prunes,
            turns,
            self.buffered,
            self.lost,
            self.context_losses,
            self.max_gap,
        )


def simulate_call(
    config: RolloverConfig | None = None, profile: CallProfile | None = None
) -> SimulationReport:
    """Simulate a call with the rollover policy and pruning on."""
    return _Sim(config or RolloverConfig(), profile or CallProfile(), baseline=False).run()


def simulate_baseline(
    config: RolloverConfig | None = None, profile: CallProfile | None = None
) -> SimulationReport:
    """The same call with no pruning and no rollover: one session until the hard cap."""
    base = dataclasses.replace(config or RolloverConfig(), max_input_tokens=NEVER)
    return _Sim(base, profile or CallProfile(), baseline=True).run()
