"""Idempotent tools: a side-effecting tool runs once per logical call, whatever re-issues it.

A model's tool call can come twice. A barge-in, a reconnect or a failover
re-issues the response that made it, and the model, reading the same caller
turn again, calls the same tool again. On the realtime path the re-issued
``function_call`` item has a **new** ``call_id``: a new session never saw the
first one (voxpipe seeds it with the heard turns and the tool results as text,
and OpenAI's API forgets call ids across sessions), and a new response is a
new item. So the call id alone cannot tell a repeat from a new call.

:class:`ToolLedger` decides with two keys, in this order:

1. **the call id**: the same ``function_call`` item again (a replayed event,
   a framework re-running it) is the same call (``DedupReason.SAME_CALL_ID``);
2. **the tool, its arguments and the caller's turn**: a new call id with the
   same tool name and the same arguments (canonical JSON: key order and
   spacing do not count) while the caller has not spoken since is the same
   logical call re-issued (``DedupReason.SAME_CALL_IN_TURN``).

A repeat never reaches the handler: it gets the first call's result (or waits
for it while the first still runs). The first call's id is the call's
**idempotency key**; handlers read it to pass on to their own backends (a
payment API's idempotency key), which covers what this ledger cannot: a
process restart, or a first run that was cancelled half-way (a cancelled or
failed run leaves no result, so the next repeat runs the handler again, under
the same key).

The price of rule 2: within one caller turn, two identical calls of one tool
are one call. A model that means two (two coffees) must say so in the
arguments (``quantity=2``, or two different items); a new caller turn always
runs the tool again. Entries are kept ``keep_ms`` (default 30 minutes) and at
most ``remembered`` of them.

Sans-I/O: the time is an argument; no clock, no tasks.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

DEFAULT_KEEP_MS = 30 * 60 * 1000
DEFAULT_REMEMBERED = 512


class DedupReason(enum.Enum):
    """Why a tool call was found to be a repeat of one that ran."""

    SAME_CALL_ID = "same_call_id"  # the same function_call item again
    SAME_CALL_IN_TURN = "same_call_in_turn"  # new call id; same tool, arguments and caller turn


@dataclasses.dataclass(frozen=True)
class RunTool:
    """A new logical call: run the handler, under ``idempotency_key`` (its call id)."""

    idempotency_key: str


@dataclasses.dataclass(frozen=True)
class RepeatedTool:
    """A repeat: answer with the first call's ``result``; never run the handler.

    ``finished`` False: the first run has no result yet (the driver waits for it).
    """

    idempotency_key: str
    reason: DedupReason
    finished: bool
    result: Any = None


@dataclasses.dataclass
class _Entry:
    key: str
    logical: tuple[int, str, str]
    at_ms: int
    call_ids: set[str]
    finished: bool = False
    result: Any = None
    abandoned: bool = False


class ToolLedger:
    """The tool calls of one call that ran, by call id and by logical call (module docstring)."""

    def __init__(
        self, *, keep_ms: int = DEFAULT_KEEP_MS, remembered: int = DEFAULT_REMEMBERED
    ) -> None:
        if keep_ms <= 0 or remembered <= 0:
            raise ValueError("keep_ms and remembered must be positive")
        self.keep_ms = keep_ms
        self.remembered = remembered
        self.runs = 0  # handler runs granted
        self.repeats = 0  # calls answered from the ledger
        self._by_call_id: dict[str, _Entry] = {}
        self._by_logical: dict[tuple[int, str, str], _Entry] = {}

    def request(
        self,
        name: str,
        arguments: str | Mapping[str, Any],
        call_id: str,
        caller_turn: int,
        now_ms: int,
    ) -> RunTool | RepeatedTool:
        """The model called ``name``: run it, or answer it as the repeat it is.

        ``caller_turn`` counts the caller's turns so far (any counter that
        moves when the caller speaks again).
        """
        self._expire(now_ms)
        entry = self._by_call_id.get(call_id)
        reason = DedupReason.SAME_CALL_ID
        logical = (caller_turn, name, canonical_arguments(arguments))
        if entry is None:
            entry = self._by_logical.get(logical)
            reason = DedupReason.SAME_CALL_IN_TURN
        if entry is not None:
            entry.call_ids.add(call_id)
            self._by_call_id[call_id] = entry
            if entry.abandoned:  # the first run never answered: run again, same key
                entry.abandoned = False
                self.runs += 1
                return RunTool(entry.key)
            self.repeats += 1
            return RepeatedTool(entry.key, reason, entry.finished, entry.result)
        entry = _Entry(call_id, logical, now_ms, {call_id})
        self._by_call_id[call_id] = entry
        self._by_logical[logical] = entry
        self.runs += 1
        self._bound()
        return RunTool(call_id)

    def answered(self, call_id: str, result: Any) -> None:
        """The run under ``call_id`` (or a repeat of it) gave ``result``: repeats get it."""
        entry = self._by_call_id.get(call_id)
        if entry is not None and not entry.finished:
            entry.finished, entry.result = True, result

    def abandoned(self, call_id: str) -> None:
        """The run under ``call_id`` was cancelled or failed: the next repeat runs again."""
        entry = self._by_call_id.get(call_id)
        if entry is not None and not entry.finished:
            entry.abandoned = True

    def result_of(self, call_id: str) -> RepeatedTool | None:
        """Where the logical call ``call_id`` belongs to stands (None: not known, or forgotten)."""
        entry = self._by_call_id.get(call_id)
        if entry is None:
            return None
        return RepeatedTool(entry.key, DedupReason.SAME_CALL_ID, entry.finished, entry.result)

    def __len__(self) -> int:
        return len(self._by_logical)

    def _expire(self, now_ms: int) -> None:
        old = [e for e in self._by_logical.values() if now_ms - e.at_ms > self.keep_ms]
        for entry in old:
            self._forget(entry)

    def _bound(self) -> None:
        while len(self._by_logical) > self.remembered:
            self._forget(next(iter(self._by_logical.values())))

    def _forget(self, entry: _Entry) -> None:
        if self._by_logical.get(entry.logical) is entry:
            del self._by_logical[entry.logical]
        for call_id in entry.call_ids:
            if self._by_call_id.get(call_id) is entry:
                del self._by_call_id[call_id]


def canonical_arguments(arguments: str | Mapping[str, Any]) -> str:
    """``arguments`` as canonical JSON (sorted keys, no spaces); unparseable text as it is."""
    value: Any = arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments or "{}")
        except ValueError:
            return arguments
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


__all__ = [
    "DedupReason",
    "RepeatedTool",
    "RunTool",
    "ToolLedger",
    "canonical_arguments",
]
