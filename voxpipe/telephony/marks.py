"""What the caller heard, from a provider's marks: the playout tracker of a media stream.

Twilio (and Telnyx, and Plivo with its checkpoints) plays the audio we send
from its own buffer and, for every ``mark`` we send after some audio, returns
the mark once that audio has played. So the
tracker marks each utterance where it begins and every ``interval_ms`` of its
audio (a mark names the utterance and the position), and a returned mark
confirms that position, ``one-way latency`` ago (:class:`PositionConfirmed`).

An interruption sends ``clear``: Twilio drops what it holds and returns every
pending mark at once. We send one more mark, the *probe*, right after the
``clear``; with nothing left to play it comes straight back, closing that
burst. The last mark returned before the burst is the last one played, and
the caller heard that position plus the time from its return to the probe's:
both crossed the same path from Twilio, so the network delay cancels
(:class:`CutConfirmed`). A mark returned within ``burst_window_ms`` of the
probe might belong to the burst; it is not trusted, and the mark before it,
a little further back, serves as well while playback was continuous.

Plivo never returns a checkpoint whose audio a clear dropped, and answers
the clear itself (``clearedAudio``): :meth:`MarkTracker.clear_sent`, then
:meth:`MarkTracker.clear_acknowledged`. No burst to tell apart, so the
anchor is simply the last checkpoint returned before the acknowledgment, and
the caller heard its position plus the time from its return to the
acknowledgment's, the network delay cancelling as before.

When the probe (or acknowledgment) does not come back within ``confirm_within_ms`` the tracker
falls back to an estimate and says so (:class:`CutEstimated`): the position
sent by the ``clear``, which is what a far end that plays audio as it arrives
(we pace it at real time) had heard when the ``clear`` reached it. Marks
that stop coming back during playback are reported once (:class:`MarksLate`).

Sans-I/O: the driver reports what it sent and what came back, each with
``now_ms``, sends the :class:`SendMark`\\ s it is given, and calls
:meth:`MarkTracker.tick` by :attr:`MarkTracker.deadline_ms`.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools

from voxpipe.errors import ConfigError

MAX_PENDING = 600  # a minute of marks at 100 ms; a far end that never returns them
MAX_ITEMS = 64
_RECENT_ECHOES = 32


class PlayoutState(enum.Enum):
    """Whether a ``clear`` is waiting for its marks."""

    PLAYING = "playing"
    CLEARING = "clearing"


class MarkIgnoredReason(enum.Enum):
    """Why a returned mark was not used."""

    UNKNOWN = "unknown"  # never sent (or long forgotten)
    LATE = "late"  # part of a clear that was already settled by estimate


@dataclasses.dataclass(frozen=True)
class SendMark:
    """Send a ``mark`` named ``name`` now, after the audio already sent."""

    name: str


@dataclasses.dataclass(frozen=True)
class PositionConfirmed:
    """The far end played ``played_ms`` of ``key`` (reported at ``at_ms``; a one-way delay ago)."""

    key: str
    played_ms: float
    at_ms: float


@dataclasses.dataclass(frozen=True)
class CutConfirmed:
    """The ``clear`` stopped ``key`` after ``played_ms`` had been heard, by Twilio's marks."""

    key: str
    played_ms: float
    at_ms: float


@dataclasses.dataclass(frozen=True)
class CutEstimated:
    """No marks came back in time after the ``clear``: ``played_ms`` of ``key`` is an estimate."""

    key: str
    played_ms: float
    at_ms: float


@dataclasses.dataclass(frozen=True)
class MarksLate:
    """No mark came back for ``waited_ms``: positions are those sent until one does."""

    waited_ms: float


@dataclasses.dataclass(frozen=True)
class MarkIgnored:
    """A returned mark that was not used, and why."""

    name: str
    reason: MarkIgnoredReason


@dataclasses.dataclass(frozen=True)
class AcknowledgmentIgnored:
    """A clear's acknowledgment that settled nothing, and why."""

    reason: MarkIgnoredReason


PlayoutEvent = (
    PositionConfirmed
    | CutConfirmed
    | CutEstimated
    | MarksLate
    | MarkIgnored
    | AcknowledgmentIgnored
)


@dataclasses.dataclass(frozen=True)
class _Mark:
    name: str
    key: str
    position_ms: float
    sent_ms: float
    seq: int  # the order it was sent in


@dataclasses.dataclass
class _Item:
    order: int
    sent_ms: float = 0.0  # audio of the item sent so far
    marks_ms: list[float] = dataclasses.field(default_factory=list)  # where its marks sit


@dataclasses.dataclass
class _Clear:
    at_ms: float
    probes: dict[str, int]  # name -> seq; the first to come back closes the burst
    sent_ms: dict[str, float]  # each affected item's audio sent by the clear
    seq: int  # the latest clear's place in the order of marks


class MarkTracker:
    """Marks for one Media Stream and what their return says was heard (module docstring)."""

    def __init__(
        self,
        *,
        interval_ms: float = 100,
        confirm_within_ms: float = 1000,
        burst_window_ms: float = 25,
    ) -> None:
        if interval_ms <= 0 or confirm_within_ms <= 0 or not 0 <= burst_window_ms < interval_ms:
            raise ConfigError(
                "marks need interval_ms > 0, confirm_within_ms > 0 and a burst window"
            )
        self.interval_ms = interval_ms
        self.confirm_within_ms = confirm_within_ms
        self.burst_window_ms = burst_window_ms
        self.state = PlayoutState.PLAYING
        self._seq = itertools.count(1)
        self._items: collections.OrderedDict[str, _Item] = collections.OrderedDict()
        self._current: str | None = None
        self._pending: collections.OrderedDict[str, _Mark] = collections.OrderedDict()
        self._echoes: collections.deque[tuple[_Mark, float]] = collections.deque(
            maxlen=_RECENT_ECHOES
        )
        self._clear: _Clear | None = None
        self._abandoned: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self._late_acks = 0  # acknowledgments owed to clears settled by estimate
        self._late_reported = False

    @property
    def deadline_ms(self) -> float | None:
        """When :meth:`tick` has something to decide (None: nothing pending)."""
        if self._clear is not None:
            return self._clear.at_ms + self.confirm_within_ms
        oldest = next(iter(self._pending.values()), None)
        if oldest is None or self._late_reported:
            return None
        return oldest.sent_ms + self.confirm_within_ms

    # -- what the driver sent ------------------------------------------------------------

    def utterance_began(self, key: str, now_ms: float) -> SendMark:
        """The audio that follows is utterance ``key``'s: mark where it begins."""
        self._current = key
        self._items.pop(key, None)
        self._items[key] = _Item(order=next(self._seq))
        while len(self._items) > MAX_ITEMS:
            self._items.popitem(last=False)
        return self._mark(key, 0.0, now_ms)

    def media_sent(self, duration_ms: float, now_ms: float) -> SendMark | None:
        """``duration_ms`` more of the current utterance went out; a mark when one is due."""
        key = self._current if self._current is not None else ""
        item = self._items.get(key)
        if item is None:
            self.utterance_began(key, now_ms)  # audio without a beginning: mark it anyway
            item = self._items[key]
        item.sent_ms += duration_ms
        if item.sent_ms - item.marks_ms[-1] < self.interval_ms:
            return None
        return self._mark(key, item.sent_ms, now_ms)

    def cleared(self, now_ms: float) -> SendMark:
        """A ``clear`` went out: send the probe that closes Twilio's burst of marks.

        Another ``clear`` before the burst came back (one interruption reported
        twice) joins the first: the first probe back settles both.
        """
        seq = self._open_clear(now_ms)
        probe = SendMark(f"cleared/{seq}")
        assert self._clear is not None
        self._clear.probes[probe.name] = seq
        return probe

    def clear_sent(self, now_ms: float) -> None:
        """A ``clear`` went out to a far end that acknowledges it and drops its marks (Plivo)."""
        self._open_clear(now_ms)

    def _open_clear(self, now_ms: float) -> int:
        affected = {m.key for m in self._pending.values()}
        if self._current is not None:
            affected.add(self._current)
        sent = {k: self._items[k].sent_ms for k in affected if k in self._items}
        seq = next(self._seq)
        if self._clear is None:
            self._clear = _Clear(now_ms, {}, sent, seq)
        else:
            self._clear.seq = seq
            self._clear.sent_ms.update(
                {k: v for k, v in sent.items() if k not in self._clear.sent_ms}
            )
        self._current = None
        self.state = PlayoutState.CLEARING
        return seq

    # -- what came back ------------------------------------------------------------------

    def mark_echoed(self, name: str, now_ms: float) -> list[PlayoutEvent]:
        """Twilio returned the mark ``name``."""
        if self._clear is not None and name in self._clear.probes:
            return self._settle(self._clear.probes[name], now_ms, self.burst_window_ms)
        mark = self._pending.get(name)
        if mark is None:
            reason = (
                MarkIgnoredReason.LATE if name in self._abandoned else MarkIgnoredReason.UNKNOWN
            )
            return [MarkIgnored(name, reason)]
        while self._pending:  # Twilio returns marks in order: any before it were lost
            if self._pending.popitem(last=False)[0] == name:
                break
        self._echoes.append((mark, now_ms))
        self._late_reported = False
        if self.state is PlayoutState.CLEARING:
            return []  # played, or returned by the clear: the probe will tell
        return [PositionConfirmed(mark.key, mark.position_ms, now_ms)]

    def clear_acknowledged(self, now_ms: float) -> list[PlayoutEvent]:
        """The far end says it dropped its audio (Plivo's ``clearedAudio``): the cut settles.

        Nothing it held was returned, so every mark returned before this one was
        played: no burst window.
        """
        if self._clear is None or self._clear.probes:
            late = self._late_acks > 0
            self._late_acks -= late
            reason = MarkIgnoredReason.LATE if late else MarkIgnoredReason.UNKNOWN
            return [AcknowledgmentIgnored(reason)]
        return self._settle(self._clear.seq, now_ms, 0.0)

    def tick(self, now_ms: float) -> list[PlayoutEvent]:
        """Past a deadline: estimate an unconfirmed cut; say when marks stopped coming back."""
        deadline = self.deadline_ms
        if deadline is None or now_ms < deadline:
            return []
        if self._clear is None:
            self._late_reported = True
            oldest = next(iter(self._pending.values()))
            return [MarksLate(now_ms - oldest.sent_ms)]
        clear = self._clear
        self._abandon()
        return [CutEstimated(key, sent, now_ms) for key, sent in self._by_order(clear.sent_ms)]

    # -- the burst -----------------------------------------------------------------------

    def _settle(self, probe_seq: int, now_ms: float, window_ms: float) -> list[PlayoutEvent]:
        clear = self._clear
        assert clear is not None
        self._abandoned.extend(clear.probes)  # the other probes come back late
        self._clear = None
        self.state = PlayoutState.PLAYING
        # Every mark sent before the probe has come back (or never will); later ones are live.
        for name in [n for n, m in self._pending.items() if m.seq < probe_seq]:
            del self._pending[name]
        anchor = self._anchor(now_ms, window_ms)
        events: list[PlayoutEvent] = []
        for key, sent in self._by_order(clear.sent_ms):
            heard = self._heard(key, sent, anchor, now_ms)
            events.append(CutConfirmed(key, heard, now_ms))
        return events

    def _anchor(self, probe_ms: float, window_ms: float) -> tuple[_Mark, float] | None:
        """The latest mark surely played: returned before the burst window."""
        for mark, echoed in reversed(self._echoes):
            if echoed <= probe_ms - window_ms:
                return mark, echoed
        return None

    def _heard(
        self,
        key: str,
        sent_ms: float,
        anchor: tuple[_Mark, float] | None,
        probe_ms: float,
    ) -> float:
        if anchor is None or key not in self._items:
            return 0.0
        mark, echoed = anchor
        order, anchor_order = self._order(key), self._order(mark.key)
        if order < anchor_order:
            return sent_ms  # it ended before the anchor's utterance began
        if order > anchor_order:
            return 0.0  # it never began playing
        # The mark after the anchor had not played (or only just): never count past it.
        later = [p for p in self._items[key].marks_ms if p > mark.position_ms]
        heard = mark.position_ms + (probe_ms - echoed)
        return min(heard, sent_ms, *later[:1])

    # -- bookkeeping ---------------------------------------------------------------------

    def _mark(self, key: str, position_ms: float, now_ms: float) -> SendMark:
        marks = self._items[key].marks_ms
        marks.append(position_ms)
        del marks[:-MAX_PENDING]
        seq = next(self._seq)
        name = f"{key}@{round(position_ms)}ms/{seq}"
        self._pending[name] = _Mark(name, key, position_ms, now_ms, seq)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return SendMark(name)

    def _abandon(self) -> None:
        """Settle the clear without its marks: whatever comes back for it is late."""
        self._abandoned.extend(self._pending)
        if self._clear is not None:
            self._abandoned.extend(self._clear.probes)
            self._late_acks += not self._clear.probes
        self._pending.clear()
        self._clear = None
        self.state = PlayoutState.PLAYING

    def _order(self, key: str) -> int:
        item = self._items.get(key)
        return -1 if item is None else item.order

    def _by_order(self, sent: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(sent.items(), key=lambda kv: self._order(kv[0]))
