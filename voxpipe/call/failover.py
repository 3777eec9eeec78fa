"""When a call leaves the realtime brain for the chained one, and when it comes back.

:class:`FailoverPolicy` is the sans-I/O core of the brain switch inside one
call. The driver (the brain switch processor) reports what the realtime brain
does, each with ``now_ms``; the policy answers with :class:`SwitchBrain` or
:class:`ProbeRealtime` commands. It never reads a clock.

Away from realtime, at once (the caller must not lose the turn):

- the realtime brain gave up (retry budget spent, or an error fatal for it,
  ``invalid_api_key`` included: with a fallback the call goes on);
- an error fatal for this vendor arrives even where recovery would retry it:
  ``insufficient_quota`` / ``billing_hard_limit_reached``, a storm of server
  errors (``server_storm`` of them within ``server_storm_window_ms``), or rate
  limits exhausted with a reset further off than ``long_reset_ms``;
- hang detection: a response that plays no audio within
  ``first_audio_deadline_ms`` of its start, or goes silent for ``stall_ms``
  mid-reply (a stall: the socket stays open and says nothing). Half way to
  either limit the policy says :class:`PrepareFallback`: the driver gets the
  chained brain's answer ready (generated and its first words synthesised
  ahead), so a switch that follows speaks sooner; audio that comes after all
  says to drop it.

Back to realtime only at a turn boundary (the caller is being listened to,
no reply under way), no sooner than a cooldown after the last switch, and
only after ``probes_needed`` healthy probes in a row, each a bare session
open that carries no caller audio or text (:class:`HealthProbe`). A switch
away that comes within a cooldown of a switch back is a flap: the cooldown
doubles (up to ``max_cooldown_ms``), so a brain that keeps failing soon
after it is trusted again is tried ever more rarely. A switch away never
waits for a cooldown: it only happens because the realtime brain cannot
answer the caller now.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from voxpipe.call.recovery import BackoffConfig
from voxpipe.call.rollover import Role, SessionSeed
from voxpipe.errors import ConfigError


class Brain(enum.Enum):
    """Which brain answers the caller."""

    REALTIME = "realtime"  # the speech-to-speech service
    CHAINED = "chained"  # local VAD -> STT -> LLM -> TTS


class SwitchReason(enum.Enum):
    """Why the call changed brains."""

    RECOVERY_EXHAUSTED = "recovery_exhausted"  # reconnects used up the retry budget
    FATAL_ERROR = "fatal_error"  # an error the realtime brain cannot recover from
    QUOTA_EXHAUSTED = "quota_exhausted"  # insufficient_quota, billing limit
    SERVER_ERRORS = "server_errors"  # a storm of 5xx / server_error
    RATE_LIMITED = "rate_limited"  # limits exhausted with a long reset
    FIRST_AUDIO_LATE = "first_audio_late"  # a response made no audio in time
    AUDIO_STALLED = "audio_stalled"  # a reply went silent mid-way
    REALTIME_HEALTHY = "realtime_healthy"  # probes succeeded: back to realtime


QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
SERVER_ERROR_CODES = frozenset({"server_error", "internal_error", "service_unavailable"})


@dataclasses.dataclass(frozen=True)
class FailoverConfig:
    """What triggers a switch, and how cautiously the call comes back.

    The defaults follow the issue: a 2 s first-audio deadline; a switch back
    after a minute on the fallback with two healthy probes 10 s apart.
    """

    first_audio_deadline_ms: int = 2_000
    stall_ms: int = 2_000  # a reply silent this long mid-way (its audio had begun)
    # Reconnects the realtime brain may try (in recovery's 10-minute window) before the
    # call switches: the second lost socket within it moves the call by default.
    reconnects: int = 1
    server_storm: int = 3  # server errors ...
    server_storm_window_ms: int = 30_000  # ... within this window
    long_reset_ms: int = 10_000  # exhausted rate limits resetting later than this
    switch_back: bool = True
    cooldown_ms: int = 60_000
    max_cooldown_ms: int = 15 * 60_000
    probe_interval_ms: int = 10_000
    probes_needed: int = 2
    # Get ahead on the chained brain: warm its LLM and voice as the call starts, and have
    # the re-asked answer under way half way to a hang's limit (PrepareFallback).
    head_start: bool = True

    def __post_init__(self) -> None:
        if min(self.first_audio_deadline_ms, self.stall_ms, self.probe_interval_ms) <= 0:
            raise ConfigError(
                "first_audio_deadline_ms, stall_ms and probe_interval_ms must be positive"
            )
        if self.server_storm < 1 or self.probes_needed < 1 or self.reconnects < 1:
            raise ConfigError("reconnects, server_storm and probes_needed must be at least 1")
        if not 0 <= self.cooldown_ms <= self.max_cooldown_ms:
            raise ConfigError("need 0 <= cooldown_ms <= max_cooldown_ms")

    def backoff(self) -> BackoffConfig:
        """The realtime brain's retry budget when a fallback waits: ``reconnects`` tries."""
        return BackoffConfig(
            initial_ms=250,
            max_ms=2_000,
            max_consecutive=self.reconnects,
            max_in_window=self.reconnects,
        )


@dataclasses.dataclass(frozen=True)
class SwitchBrain:
    """Command: move the call to ``to`` now (``detail`` says what happened)."""

    to: Brain
    reason: SwitchReason
    detail: str
    at_ms: int


@dataclasses.dataclass(frozen=True)
class ProbeRealtime:
    """Command: open a bare realtime session to see if the brain is back.

    It has no field for audio or text on purpose: a probe never replays the
    caller's request (see :class:`HealthProbe`).
    """

    at_ms: int


@dataclasses.dataclass(frozen=True)
class PrepareFallback:
    """Command: a hang is suspected, get the chained answer ready (``ready``), or drop it.

    Nothing moves: the realtime brain keeps the call. A switch that follows
    finds the answer it re-asks already under way.
    """

    at_ms: int
    ready: bool = True
    due_ms: int | None = None  # when the switch comes if the silence goes on


FailoverCommand = SwitchBrain | ProbeRealtime | PrepareFallback


class FailoverPolicy:
    """Decides the brain switches of one call (see the module docstring)."""

    def __init__(self, config: FailoverConfig | None = None, *, now_ms: int = 0) -> None:
        self.config = config or FailoverConfig()
        self.brain = Brain.REALTIME
        self.switches: list[SwitchBrain] = []
        self.cooldown_ms = self.config.cooldown_ms
        self._last_switch_ms: int | None = None
        self._response_since: int | None = None  # a response awaits audio since then
        self._audio_seen = False  # the awaited response has played some audio
        self._prepared: int | None = None  # the silent spell (its start) a fallback was readied for
        self._server_errors: deque[int] = deque()
        self._listening = True
        self._healthy_probes = 0
        self._probe_due_ms: int | None = None
        self._probing = False
        self._time_on: dict[Brain, int] = dict.fromkeys(Brain, 0)
        self._on_since = now_ms

    # -- what the realtime brain did ---------------------------------------------------

    def response_started(self, now_ms: int) -> list[FailoverCommand]:
        """A response was asked for: its first audio is due within the deadline."""
        if self.brain is Brain.REALTIME:
            self._response_since = now_ms
            self._audio_seen = False
        return []

    def audio_played(self, now_ms: int) -> list[FailoverCommand]:
        """Reply audio came out of the realtime brain: the next must come within the deadline."""
        if self.brain is Brain.REALTIME and self._response_since is not None:
            self._response_since = now_ms
            self._audio_seen = True
        return self._unprepare(now_ms)

    def response_ended(self, now_ms: int) -> list[FailoverCommand]:
        """The response finished, was cancelled or failed: no audio is owed."""
        self._response_since = None
        return self._unprepare(now_ms)

    def provider_error(self, code: str | None, now_ms: int) -> list[FailoverCommand]:
        """An ``error`` event the realtime brain reported (and may survive)."""
        if self.brain is not Brain.REALTIME or code is None:
            return []
        if code in QUOTA_CODES:
            return self._away(SwitchReason.QUOTA_EXHAUSTED, code, now_ms)
        if code not in SERVER_ERROR_CODES:
            return []
        window = self.config.server_storm_window_ms
        while self._server_errors and self._server_errors[0] <= now_ms - window:
            self._server_errors.popleft()
        self._server_errors.append(now_ms)
        if len(self._server_errors) < self.config.server_storm:
            return []
        detail = f"{len(self._server_errors)} server errors in {window // 1000} s"
        return self._away(SwitchReason.SERVER_ERRORS, detail, now_ms)

    def rate_limits(
        self, limits: Iterable[tuple[int, float]], now_ms: int
    ) -> list[FailoverCommand]:
        """``rate_limits.updated`` as (remaining, reset seconds) pairs."""
        if self.brain is not Brain.REALTIME:
            return []
        waits = [int(reset * 1000) for remaining, reset in limits if remaining <= 0]
        longest = max(waits, default=0)
        if longest <= self.config.long_reset_ms:
            return []
        return self._away(SwitchReason.RATE_LIMITED, f"limits reset in {longest} ms", now_ms)

    def gave_up(self, fatal: bool, detail: str, now_ms: int) -> list[FailoverCommand]:
        """The realtime brain stopped trying: a fatal error, or its retry budget ran out."""
        if self.brain is not Brain.REALTIME:
            return []
        reason = SwitchReason.FATAL_ERROR if fatal else SwitchReason.RECOVERY_EXHAUSTED
        return self._away(reason, detail, now_ms)

    # -- turn boundaries and probes ----------------------------------------------------

    def listening(self, listening: bool, now_ms: int) -> list[FailoverCommand]:
        """Whether the call is at a turn boundary (listening, no reply under way)."""
        self._listening = listening
        return self.tick(now_ms)

    def probe_finished(self, healthy: bool, now_ms: int) -> list[FailoverCommand]:
        """A probe came back; enough healthy ones in a row switch back at a turn boundary."""
        self._probing = False
        if self.brain is not Brain.CHAINED:
            return []
        self._healthy_probes = self._healthy_probes + 1 if healthy else 0
        self._probe_due_ms = now_ms + self.config.probe_interval_ms
        return self._maybe_back(now_ms)

    def tick(self, now_ms: int) -> list[FailoverCommand]:
        """Timer: hang detection on realtime, probes and the switch back on chained."""
        if self.brain is Brain.REALTIME:
            return self._check_audio(now_ms)
        back = self._maybe_back(now_ms)
        if back or not self._may_probe(now_ms):
            return back
        self._probing = True
        return [ProbeRealtime(now_ms)]

    def time_on(self, brain: Brain, now_ms: int) -> int:
        """Milliseconds the call has spent on ``brain`` so far."""
        current = now_ms - self._on_since if brain is self.brain else 0
        return self._time_on[brain] + current

    def next_switch_back_ms(self) -> int | None:
        """The earliest a switch back may happen (None: not on the fallback)."""
        if self.brain is not Brain.CHAINED or not self.config.switch_back:
            return None
        assert self._last_switch_ms is not None
        return self._last_switch_ms + self.cooldown_ms

    # -- helpers -----------------------------------------------------------------------

    def _check_audio(self, now_ms: int) -> list[FailoverCommand]:
        since = self._response_since
        if since is None:
            return []
        config = self.config
        limit = config.stall_ms if self._audio_seen else config.first_audio_deadline_ms
        if now_ms - since < limit:
            if not config.head_start or now_ms - since < limit // 2 or self._prepared == since:
                return []
            self._prepared = since  # once per silent spell
            return [PrepareFallback(now_ms, due_ms=since + limit)]
        reason = SwitchReason.AUDIO_STALLED if self._audio_seen else SwitchReason.FIRST_AUDIO_LATE
        return self._away(reason, f"no reply audio for {now_ms - since} ms", now_ms)

    def _unprepare(self, now_ms: int) -> list[FailoverCommand]:
        if self._prepared is None:
            return []
        self._prepared = None  # the realtime brain spoke (or finished) after all
        return [PrepareFallback(now_ms, ready=False)]

    def _away(self, reason: SwitchReason, detail: str, now_ms: int) -> list[FailoverCommand]:
        last = self._last_switch_ms
        if last is not None and now_ms - last < self.cooldown_ms:
            # Back on realtime for less than a cooldown and failing again: a flap.
            self.cooldown_ms = min(self.config.max_cooldown_ms, self.cooldown_ms * 2)
        return [self._switch(Brain.CHAINED, reason, detail, now_ms)]

    def _maybe_back(self, now_ms: int) -> list[FailoverCommand]:
        due = self.next_switch_back_ms()
        if due is None or now_ms < due or not self._listening:
            return []
        if self._healthy_probes < self.config.probes_needed:
            return []
        detail = f"{self._healthy_probes} healthy probes"
        return [self._switch(Brain.REALTIME, SwitchReason.REALTIME_HEALTHY, detail, now_ms)]

    def _may_probe(self, now_ms: int) -> bool:
        if self._probing or not self.config.switch_back:
            return False
        due = self._probe_due_ms
        if due is None:
            # The first probe goes out so that its answers are in by the cooldown's end.
            due = self._first_probe_ms()
        return now_ms >= due

    def _first_probe_ms(self) -> int:
        back = self.next_switch_back_ms()
        assert back is not None
        lead = self.config.probe_interval_ms * (self.config.probes_needed - 1)
        assert self._last_switch_ms is not None
        return max(self._last_switch_ms, back - lead)

    def _switch(self, to: Brain, reason: SwitchReason, detail: str, now_ms: int) -> SwitchBrain:
        self._time_on[self.brain] += now_ms - self._on_since
        self._on_since = now_ms
        self.brain = to
        self._last_switch_ms = now_ms
        self._response_since = None
        self._prepared = None  # a prepared answer is the switch's now (or stale)
        self._healthy_probes = 0
        self._probe_due_ms = None
        self._probing = False
        self._server_errors.clear()
        switch = SwitchBrain(to, reason, detail, now_ms)
        self.switches.append(switch)
        return switch


CUT_MARK = " (interrupted)"  # how the call's record ends a reply that was cut
# The re-ask's note: its words first and always the same (a chained brain warmed with them
# finds them in llama.cpp's prompt cache at the switch), what was heard last.
REASK_STEM = (
    "The line failed while you were answering the caller's last message. "
    "Answer it again now, briefly, without mentioning the failure."
)
REASK_HEARD = '\nThey heard you say "{heard}" before it failed.'


def fallback_start(
    seed: SessionSeed | None, instructions: str, *, reask: bool = False
) -> FallbackStart:
    """What the chained brain starts from: the heard conversation, never the unheard tail.

    ``seed`` is the realtime call's hand-over seed (older turns summarised,
    the last ones verbatim, a cut reply only as far as it was heard); the
    summary and the tools' facts go into the instructions, as they would
    into a new realtime session's. When the cut answer is to be asked again
    (``reask``), the context ends on the caller's message and the words they
    heard of the cut reply go into the instructions: a chat model asked to
    follow its own half-reply (Qwen2.5-0.5B, at load 12) once answered
    "I'm sorry, but I can't assist with that."
    """
    if seed is None:
        return FallbackStart(instructions, (), REASK_STEM if reask else "")
    turns = [t for t in seed.verbatim if t.role is not Role.TOOL and t.text.strip()]
    note = ""
    if reask and turns and turns[-1].role is Role.ASSISTANT and turns[-1].text.endswith(CUT_MARK):
        heard = turns.pop().text.removesuffix(CUT_MARK).strip()
        note = REASK_STEM + (REASK_HEARD.format(heard=heard) if heard else "")
    elif reask:
        note = REASK_STEM
    messages = tuple({"role": t.role.value, "content": t.text} for t in turns)
    return FallbackStart(seed.instructions(instructions), messages, note)


@dataclasses.dataclass(frozen=True)
class FallbackStart:
    """The chained brain's instructions and its context's messages at the switch.

    ``reask_note`` (empty: no re-ask) goes with the instructions for the one
    reply that answers the cut question again, and no further.
    """

    instructions: str
    messages: tuple[dict[str, str], ...]
    reask_note: str = ""

    @property
    def reask_instructions(self) -> str:
        """The instructions for the re-asked reply."""
        return f"{self.instructions}\n\n{self.reask_note}" if self.reask_note else self.instructions


# The [fallback] keys of agent.toml: FailoverConfig's fields that a deployment tunes.
FALLBACK_KEYS = (
    "brain",
    "first_audio_deadline_ms",
    "stall_ms",
    "reconnects",
    "server_storm",
    "server_storm_window_ms",
    "long_reset_ms",
    "switch_back",
    "cooldown_ms",
    "max_cooldown_ms",
    "probe_interval_ms",
    "probes_needed",
    "head_start",
)
_BOOL_KEYS = ("switch_back", "head_start")


def parse_fallback_table(table: Any, source: str) -> FailoverConfig | None:
    """Validate ``[fallback]`` of an agent file (None: absent, no fallback).

    ``brain = "chained"`` is the only fallback brain; ``switch_back`` is a
    boolean and every other key a whole number of :class:`FailoverConfig`. A
    bad value is a ConfigError naming the file and key.
    """
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'fallback' must be a table ([fallback])")
    for key in table:
        if key not in FALLBACK_KEYS:
            raise ConfigError(
                f"{source}: unknown key [fallback].{key}", hint=f"known: {FALLBACK_KEYS}"
            )
    if table.get("brain", Brain.CHAINED.value) != Brain.CHAINED.value:
        raise ConfigError(f"{source}: [fallback].brain must be 'chained'")
    values: dict[str, Any] = {}
    for key in FALLBACK_KEYS[1:]:
        if key in table:
            value = table[key]
            if key in _BOOL_KEYS:
                if not isinstance(value, bool):
                    raise ConfigError(f"{source}: [fallback].{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{source}: [fallback].{key} must be a whole number")
            values[key] = value
    try:
        return FailoverConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: [fallback]: {exc}") from None
