"""The call events a realtime service keeps: the most recent ones, and how many of each.

The service used to keep every :data:`~voxpipe.call.events.CallEvent` of the
call in a list: about ten a turn (state changes, rate limits, responses), for
as long as the call lasted. Its readers are tests and benchmarks that look for
recent events by type (a truncation, a reconnect, a rollover); the call's
timeline and observers get every event as it happens, through the service's
``on_call_event`` handler and its frames. So the log keeps a bounded window of
the newest events, which reads as the list did (iterate, ``len``, index), and
counts every event by type for the whole call.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

from voxpipe.call.events import CallEvent
from voxpipe.errors import ConfigError

EVENTS_KEPT = 1024  # ~100 turns of a call; the rest is counted, and in the timeline


class EventLog:
    """The newest ``keep`` events of a call, and a count of every event by type."""

    def __init__(self, keep: int = EVENTS_KEPT) -> None:
        if keep < 1:
            raise ConfigError(f"an event log keeps at least 1 event, not {keep}")
        self._recent: collections.deque[CallEvent] = collections.deque(maxlen=keep)
        self.counts: collections.Counter[type] = collections.Counter()

    @property
    def keep(self) -> int:
        """How many of the newest events are kept."""
        return self._recent.maxlen or 0

    @property
    def total(self) -> int:
        """Every event of the call, kept or not."""
        return sum(self.counts.values())

    @property
    def dropped(self) -> int:
        """Events older than the window: counted, no longer kept."""
        return self.total - len(self._recent)

    def append(self, event: CallEvent) -> None:
        """Keep ``event`` (the oldest kept one goes beyond ``keep``) and count it."""
        self._recent.append(event)
        self.counts[type(event)] += 1

    def extend(self, events: Iterable[CallEvent]) -> None:
        for event in events:
            self.append(event)

    def __iadd__(self, events: Iterable[CallEvent]) -> EventLog:
        self.extend(events)
        return self

    def count(self, kind: type) -> int:
        """How many events of type ``kind`` the call had (kept or not)."""
        return self.counts[kind]

    def __iter__(self) -> Iterator[CallEvent]:
        return iter(self._recent)

    def __len__(self) -> int:
        return len(self._recent)

    def __getitem__(self, index: int) -> CallEvent:
        return self._recent[index]

    def __repr__(self) -> str:
        return f"EventLog({len(self)} kept of {self.total}, keep={self.keep})"
