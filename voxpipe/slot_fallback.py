"""Per-slot fallback on the chained path: which engine takes a request, and when to hand it on.

Each chained slot (STT, LLM, TTS) may list several engines in order. One
request (a caller's segment to transcribe, a turn to answer, a sentence to
speak) goes to the first healthy engine; if it raises, or produces nothing
within the slot's deadline, the *same* request goes to the next engine. Two
rules bound what a handoff may do:

- An engine that has already produced output (an LLM that streamed text the
  caller is hearing) is not replaced unless the policy says
  ``retry_after_partial``: the next engine would start the answer again.
- An engine that fails ``trip_after`` requests in a row is benched for
  ``cooldown_ms``: later requests go straight to the next engine instead of
  paying its deadline again, and once the cooldown has passed it is tried
  first again. A benched engine is still tried last, so a request never gives
  up without every engine having had its chance.

Sans-I/O: the driver passes ``now_ms`` in, carries out what the request says
(which engine, until when), and reports what happened. Events come back as
frozen dataclasses for the timeline and the metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from voxpipe.errors import ConfigError, IllegalTransitionError, SlotFailedError


class Slot(enum.Enum):
    """A chained slot."""

    STT = "stt"
    LLM = "llm"
    TTS = "tts"


class HandoffReason(enum.Enum):
    """Why an engine lost a request."""

    ERROR = "error"  # it raised: it could not load, the provider refused, the stream broke
    DEADLINE = "deadline"  # it produced nothing within the slot's deadline


@dataclass(frozen=True)
class FallbackPolicy:
    """How one slot hands requests on.

    ``deadline_ms`` bounds the wait for an engine's first output and, once it
    has begun, for each next piece of it (a stream that stops is a hang too).
    The last engine a request can go to has no deadline: nobody is left to
    take over.
    """

    deadline_ms: int
    retry_after_partial: bool = False
    trip_after: int = 2
    cooldown_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.deadline_ms < 1 or self.trip_after < 1 or self.cooldown_ms < 0:
            raise ConfigError(
                "a slot's deadline_ms and trip_after must be at least 1, cooldown_ms not negative"
            )


@dataclass(frozen=True)
class EngineFailed:
    """One engine's failure on one request."""

    engine: str
    reason: HandoffReason
    detail: str
    partial: bool  # it had produced output before it failed


@dataclass(frozen=True)
class HandedOff:
    """A request moved from one engine to the next."""

    slot: Slot
    from_engine: str
    to_engine: str
    reason: HandoffReason
    detail: str
    after_partial: bool
    at_ms: float


@dataclass(frozen=True)
class GaveUp:
    """A request failed for good: every engine failed, or a partial answer broke."""

    slot: Slot
    failures: tuple[EngineFailed, ...]
    retry_after_partial: bool
    at_ms: float

    @property
    def partial(self) -> bool:
        """Whether it ended because an engine that had begun answering broke."""
        return self.failures[-1].partial and not self.retry_after_partial

    def error(self) -> SlotFailedError:
        """The error the slot's driver raises or reports for this request."""
        tried = "; ".join(f"{f.engine} ({f.reason.value}: {f.detail})" for f in self.failures)
        if self.partial:
            last = self.failures[-1]
            return SlotFailedError(
                f"the {self.slot.value} engine {last.engine} broke after it had started "
                f"answering ({last.reason.value}: {last.detail}); not handed on",
                slot=self.slot.value,
                engines=tuple(f.engine for f in self.failures),
                hint=(
                    "set retry_after_partial = true in [chained] to hand it on anyway"
                    if self.slot is Slot.LLM
                    else "the rest of this request is lost; the next one tries again"
                ),
            )
        return SlotFailedError(
            f"every {self.slot.value} engine failed on this request: {tried}",
            slot=self.slot.value,
            engines=tuple(f.engine for f in self.failures),
            hint="check each engine's model path or provider; the next request tries again",
        )


SlotEvent = HandedOff | GaveUp


@dataclass
class _Health:
    failures_in_a_row: int = 0
    benched_until_ms: float | None = None

    def benched(self, now_ms: float) -> bool:
        return self.benched_until_ms is not None and now_ms < self.benched_until_ms


class SlotFallback:
    """One slot's engines, in order, and their health over a call."""

    def __init__(
        self,
        slot: Slot,
        engines: Sequence[str],
        policy: FallbackPolicy,
        deadlines_ms: Mapping[str, int] | None = None,
    ) -> None:
        if not engines:
            raise ConfigError(f"the {slot.value} slot needs at least one engine")
        if len(set(engines)) != len(engines):
            raise ConfigError(f"the {slot.value} slot names an engine twice: {list(engines)}")
        self.slot = slot
        self.engines = tuple(engines)
        self.policy = policy
        self._health = {engine: _Health() for engine in engines}
        # An engine's own deadline, where it differs from the slot's (a remote provider's).
        self._deadlines = dict(deadlines_ms or {})
        if any(ms < 1 for ms in self._deadlines.values()):
            raise ConfigError(f"the {slot.value} slot's engine deadlines must be at least 1 ms")

    def deadline_ms(self, engine: str) -> int:
        """How long ``engine`` may take to produce output, and between outputs."""
        return self._deadlines.get(engine, self.policy.deadline_ms)

    def benched(self, now_ms: float) -> list[str]:
        """The engines skipped at ``now_ms`` until their cooldown passes."""
        return [e for e in self.engines if self._health[e].benched(now_ms)]

    def begin(self, now_ms: float) -> SlotRequest:
        """A new request: healthy engines in order, then benched ones as a last resort."""
        benched = self.benched(now_ms)
        order = [e for e in self.engines if e not in benched] + benched
        return SlotRequest(self, order, now_ms)

    def _failed(self, engine: str, now_ms: float) -> None:
        health = self._health[engine]
        health.failures_in_a_row += 1
        if health.failures_in_a_row >= self.policy.trip_after:
            health.benched_until_ms = now_ms + self.policy.cooldown_ms

    def _succeeded(self, engine: str) -> None:
        self._health[engine] = _Health()


class SlotRequest:
    """One request's way through a slot's engines."""

    def __init__(self, fallback: SlotFallback, order: list[str], now_ms: float) -> None:
        self._fallback = fallback
        self._order = order
        self._index = 0
        self._failures: list[EngineFailed] = []
        self._since_ms = now_ms  # the attempt's start, then its latest output
        self.produced = False  # the current engine has produced output
        self.finished = False

    @property
    def engine(self) -> str:
        """The engine that has the request now."""
        return self._order[self._index]

    @property
    def last(self) -> bool:
        """Whether no engine is left to hand the request to."""
        return self._index + 1 >= len(self._order)

    @property
    def deadline_at_ms(self) -> float | None:
        """When the current engine's next output is due at the latest.

        None for the last engine left: with no one to hand the request to,
        cutting it off could only lose an answer that may still come (a local
        model's first token once took 35 s on a loaded 2-core machine).
        """
        if self.last:
            return None
        return self._since_ms + self._fallback.deadline_ms(self.engine)

    def remaining_ms(self, now_ms: float) -> float | None:
        """How long the driver may still wait for the current engine (None: as long as it takes)."""
        due = self.deadline_at_ms
        return None if due is None else max(0.0, due - now_ms)

    def produced_output(self, now_ms: float) -> None:
        """The current engine produced output (text, audio, a transcript): the deadline moves on."""
        self.produced = True
        self._since_ms = now_ms

    def succeeded(self) -> None:
        """The current engine finished the request."""
        self._check_open()
        self.finished = True
        self._fallback._succeeded(self.engine)

    def failed(self, now_ms: float, reason: HandoffReason, detail: str) -> SlotEvent:
        """The current engine failed; say who takes the request next, if anyone."""
        self._check_open()
        failure = EngineFailed(self.engine, reason, detail, self.produced)
        self._failures.append(failure)
        self._fallback._failed(self.engine, now_ms)
        policy, slot = self._fallback.policy, self._fallback.slot
        stopped_by_partial = self.produced and not policy.retry_after_partial
        if stopped_by_partial or self._index + 1 >= len(self._order):
            self.finished = True
            return GaveUp(slot, tuple(self._failures), policy.retry_after_partial, now_ms)
        previous, after_partial = self.engine, self.produced
        self._index += 1
        self._since_ms, self.produced = now_ms, False
        return HandedOff(slot, previous, self.engine, reason, detail, after_partial, now_ms)

    def _check_open(self) -> None:
        if self.finished:
            raise IllegalTransitionError(
                f"this {self._fallback.slot.value} request is already finished"
            )


def timeline_data(event: SlotEvent) -> dict[str, object]:
    """What the call's timeline records of ``event`` (``slot_handoff`` or ``slot_failed``)."""
    if isinstance(event, HandedOff):
        return {
            "slot": event.slot.value,
            "from": event.from_engine,
            "to": event.to_engine,
            "reason": event.reason.value,
            "detail": event.detail,
            "after_partial": event.after_partial,
        }
    return {
        "slot": event.slot.value,
        "engines": [f.engine for f in event.failures],
        "reasons": [f.reason.value for f in event.failures],
        "partial": event.partial,
        "error": str(event.error()),
    }
