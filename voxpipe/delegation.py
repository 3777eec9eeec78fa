"""Supervisor delegation with honest filler: when the voice agent says "one moment".

A fast voice model hands a hard turn to a stronger backend model (pipecat's
``LLMWithBackend``: the frontend's ``delegate`` tool, the backend's answer
coming back into the conversation). While the backend works the caller hears
nothing, so a filler helps, but only an honest one: said when the wait is
real (the backend has worked longer than ``threshold_ms``, 700 ms by
default), once per wait, and never the same wording twice in a row (a caller
who hears "one moment" twice in a minute hears a machine).

Sans-I/O: :class:`FillerPolicy` takes the time as an argument and returns
what happened; the driver (:mod:`voxpipe.processors.delegation`) owns the
timer, the backend and the speech. :func:`parse_delegate_table` reads the
``[delegate]`` table of ``agent.toml``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voxpipe.agents import BrainPath
from voxpipe.errors import DelegationConfigError
from voxpipe.timeline import EventKind

DEFAULT_THRESHOLD_MS = 700
DEFAULT_FILLERS = ("One moment.", "Let me check that.", "Just a second, please.")
# A filler spoken before a wait could be noticed is no filler; one later than the
# answer of a slow backend is no use either.
MIN_THRESHOLD_MS = 100
MAX_THRESHOLD_MS = 10_000
_KEYS = ("backend", "threshold_ms", "fillers", "instructions")


class DelegateBackend(enum.Enum):
    """The model that answers what the voice agent delegates."""

    LOCAL = "local"  # the local LLM (llama.cpp), offline
    OPENAI = "openai"  # OpenAI's chat model (needs OPENAI_API_KEY)


class WaitPhase(enum.Enum):
    """Where the voice agent stands with the backend."""

    IDLE = "idle"  # nothing delegated, or the answer is in
    WAITING = "waiting"  # delegated; no filler yet
    FILLED = "filled"  # delegated; the filler has been said


@dataclass(frozen=True)
class DelegationSettings:
    """``[delegate]`` in ``agent.toml``: who answers, and when and how the wait is filled.

    ``instructions`` is the backend's own system instruction (what it is for);
    pipecat's pairing instruction (how it reports back) is appended to it.
    """

    backend: DelegateBackend = DelegateBackend.LOCAL
    threshold_ms: int = DEFAULT_THRESHOLD_MS
    fillers: tuple[str, ...] = DEFAULT_FILLERS
    instructions: str = "You answer the caller's questions accurately and briefly."


@dataclass(frozen=True)
class BackendAsked:
    """The voice agent delegated: wait ``delegation`` began (a request during a wait joins it)."""

    delegation: int
    joined: bool


@dataclass(frozen=True)
class FillerSpoken:
    """The backend had worked ``waited_ms`` (past the threshold): say ``wording`` now."""

    delegation: int
    wording: str
    waited_ms: float


@dataclass(frozen=True)
class BackendAnswered:
    """The backend's answer came back after ``waited_ms``; ``filled``: a filler was said."""

    delegation: int
    waited_ms: float
    filled: bool


@dataclass(frozen=True)
class BackendDropped:
    """Wait ``delegation`` ended with no answer (the request never reached the backend,
    or it went idle with nothing to say): no filler, and no answer is coming."""

    delegation: int


class FillerPolicy:
    """When to fill a wait on the backend, and with which words (see the module docstring).

    The driver calls :meth:`delegated` when a request goes to the backend,
    :meth:`poll` at :meth:`due_at_ms` (or any time), :meth:`answered`
    when the backend's answer arrives, and :meth:`caller_started` /
    :meth:`caller_stopped` as the caller's turns begin and end.
    """

    def __init__(self, settings: DelegationSettings = DelegationSettings()) -> None:
        self.settings = settings
        self.phase = WaitPhase.IDLE
        self.delegations = 0
        self.caller_speaking = False
        self._started_ms = 0.0
        self._last_wording: int | None = None

    def delegated(self, now_ms: float) -> BackendAsked:
        """A request went to the backend at ``now_ms``; one during a wait joins that wait."""
        if self.phase is not WaitPhase.IDLE:
            return BackendAsked(self.delegations, joined=True)
        self.delegations += 1
        self.phase = WaitPhase.WAITING
        self._started_ms = now_ms
        return BackendAsked(self.delegations, joined=False)

    def due_at_ms(self) -> float | None:
        """When a filler falls due (None: none will, until the next delegation, or until
        the caller stops speaking: :meth:`caller_stopped` says it then if it is due)."""
        if self.phase is not WaitPhase.WAITING or self.caller_speaking:
            return None
        return self._started_ms + self.settings.threshold_ms

    def poll(self, now_ms: float) -> FillerSpoken | None:
        """The filler to say at ``now_ms``, if one is due and none was said in this wait.

        Never while the caller speaks: a filler over their words is noise, and
        the wait is not silent. It is held until they stop (and dropped if the
        answer comes first).
        """
        due = self.due_at_ms()
        if due is None or now_ms < due:
            return None
        return self._fill(now_ms)

    def caller_started(self) -> None:
        """The caller began speaking: a filler falling due now is held."""
        self.caller_speaking = True

    def caller_stopped(self, now_ms: float) -> FillerSpoken | None:
        """The caller stopped: the filler held meanwhile, if the wait is still open and past
        the threshold (else None; :meth:`due_at_ms` says when it falls due)."""
        self.caller_speaking = False
        return self.poll(now_ms)

    def _fill(self, now_ms: float) -> FillerSpoken:
        self.phase = WaitPhase.FILLED
        return FillerSpoken(self.delegations, self._next_wording(), now_ms - self._started_ms)

    def answered(self, now_ms: float) -> BackendAnswered | None:
        """The backend's answer arrived (None: no wait was open, as for a second output)."""
        if self.phase is WaitPhase.IDLE:
            return None
        filled = self.phase is WaitPhase.FILLED
        self.phase = WaitPhase.IDLE
        return BackendAnswered(self.delegations, now_ms - self._started_ms, filled)

    def abandoned(self) -> BackendDropped | None:
        """The request never reached the backend, or it answered nothing: nothing to wait
        for, so no filler (None: no wait was open)."""
        if self.phase is WaitPhase.IDLE:
            return None
        self.phase = WaitPhase.IDLE
        return BackendDropped(self.delegations)

    def _next_wording(self) -> str:
        # Round the list: wordings are distinct (checked at load), so no two in a row match.
        index = 0 if self._last_wording is None else self._last_wording + 1
        self._last_wording = index % len(self.settings.fillers)
        return self.settings.fillers[self._last_wording]


def timeline_entry(event: object) -> tuple[EventKind, dict[str, Any]] | None:
    """The timeline line for a delegation event (None: not one)."""
    match event:
        case BackendAsked():
            return EventKind.DELEGATION, {
                "phase": "asked",
                "delegation": event.delegation,
                "joined": event.joined,
            }
        case FillerSpoken():
            return EventKind.FILLER, {
                "delegation": event.delegation,
                "wording": event.wording,
                "waited_ms": round(event.waited_ms, 1),
            }
        case BackendAnswered():
            return EventKind.DELEGATION, {
                "phase": "answered",
                "delegation": event.delegation,
                "waited_ms": round(event.waited_ms, 1),
                "filled": event.filled,
            }
        case BackendDropped():
            return EventKind.DELEGATION, {"phase": "dropped", "delegation": event.delegation}
    return None


def parse_delegate_table(table: Any, source: str) -> DelegationSettings | None:
    """``[delegate]`` of an agent file (None when absent); errors name ``source`` and the key."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise DelegationConfigError(source, "delegate", "must be a table ([delegate])")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise DelegationConfigError(
            source, f"delegate.{unknown[0]}", "unknown key", hint=f"known: {', '.join(_KEYS)}"
        )
    return DelegationSettings(
        backend=_backend(table.get("backend", DelegateBackend.LOCAL.value), source),
        threshold_ms=_threshold(table.get("threshold_ms", DEFAULT_THRESHOLD_MS), source),
        fillers=_fillers(table.get("fillers", list(DEFAULT_FILLERS)), source),
        instructions=_instructions(table.get("instructions"), source),
    )


# The paths whose graph builders wrap the voice model with a backend.
DELEGATING_PATHS = frozenset({BrainPath.CHAINED, BrainPath.REALTIME})


def check_delegation(
    settings: DelegationSettings | None,
    source: str,
    path: BrainPath,
    *,
    agents: bool = False,
    llm_slots: bool = False,
    fallback: bool = False,
    openai_key: bool = False,
) -> None:
    """Refuse, before a call, a ``[delegate]`` the call would not carry out.

    A call that ignored the table would answer hard turns with the voice model
    alone and no filler, with nothing to say so; every combination the graph
    builders do not wire is a :class:`~voxpipe.errors.DelegationConfigError`
    naming ``source`` and the key instead. ``agents``: the file has
    ``[agents]`` (each agent's own system message and tools would replace the
    delegation's); ``llm_slots``: ``[chained] llm`` lists engines (each keeps
    its own instructions and tools, so the ``delegate`` tool would reach none);
    ``fallback``: the realtime brain is backed by a chained one (which would not
    delegate); ``openai_key``: a key is set for the ``openai`` backend. Both
    paths delegate: the chained one through pipecat's ``LLMWithBackend``, the
    realtime one through the model's own ``delegate`` tool.
    """
    if settings is None:
        return
    if path not in DELEGATING_PATHS:
        supported = ", ".join(sorted(p.value for p in DELEGATING_PATHS))
        raise DelegationConfigError(
            source,
            "delegate",
            f"the {path.value} path does not delegate",
            hint=f"use --mode {supported}, or remove [delegate]",
        )
    for present, key, why in (
        (agents, "[agents]", "each agent's own instructions and tools replace the voice model's"),
        (
            llm_slots and path is BrainPath.CHAINED,
            "[chained] llm",
            "the listed engines would not get the delegate tool",
        ),
        (fallback, "a fallback brain", "the chained brain taking over would not delegate"),
    ):
        if present:
            raise DelegationConfigError(source, "delegate", f"cannot be combined with {key}: {why}")
    if settings.backend is DelegateBackend.OPENAI and not openai_key:
        raise DelegationConfigError(
            source,
            "delegate.backend",
            "'openai' needs an OpenAI API key",
            hint="set OPENAI_API_KEY, or use backend = 'local' offline",
        )


def _backend(value: Any, source: str) -> DelegateBackend:
    known = [b.value for b in DelegateBackend]
    if value not in known:
        raise DelegationConfigError(
            source, "delegate.backend", f"{value!r} is not a backend", hint=f"one of {known}"
        )
    return DelegateBackend(value)


def _threshold(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DelegationConfigError(source, "delegate.threshold_ms", "must be an integer")
    if not MIN_THRESHOLD_MS <= value <= MAX_THRESHOLD_MS:
        raise DelegationConfigError(
            source,
            "delegate.threshold_ms",
            f"{value} is outside {MIN_THRESHOLD_MS}..{MAX_THRESHOLD_MS} ms",
        )
    return value


def _fillers(value: Any, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DelegationConfigError(source, "delegate.fillers", "must be a list of non-empty text")
    wordings = tuple(v.strip() for v in value)
    if len({w.lower() for w in wordings}) != len(wordings) or len(wordings) < 2:
        raise DelegationConfigError(
            source,
            "delegate.fillers",
            "needs at least two different wordings",
            hint="the same filler is never said twice in a row",
        )
    return wordings


def _instructions(value: Any, source: str) -> str:
    if value is None:
        return DelegationSettings.instructions
    if not isinstance(value, str) or not value.strip():
        raise DelegationConfigError(source, "delegate.instructions", "must be non-empty text")
    return value


__all__ = [
    "DEFAULT_FILLERS",
    "DEFAULT_THRESHOLD_MS",
    "DELEGATING_PATHS",
    "BackendAnswered",
    "BackendAsked",
    "BackendDropped",
    "DelegateBackend",
    "DelegationSettings",
    "FillerPolicy",
    "FillerSpoken",
    "WaitPhase",
    "check_delegation",
    "parse_delegate_table",
    "timeline_entry",
]
