"""Per-turn latency budget: where did the time between "user stopped" and "bot heard" go.

A turn's time is cut at six boundaries, each optional because not every
transport or brain reports every one::

    speech_end -> sent -> server_received -> first_audio_delta -> first_audio_written -> playback
       capture    uplink      inference          downlink             playback

A segment whose two boundaries are not both known is ``None``: unknown, never
guessed. When a middle boundary is missing, the time across the gap is still
known and is reported as ``unattributed_ms``, so the measured segments plus the
unattributed time always add up to the end-to-end figure. ``server_received``
comes from the server's clock; when it disagrees with ours a segment turns
negative, and that is flagged in ``skewed`` rather than clamped to zero.

On the realtime path "uplink" (sent -> first response event) also holds the
server's end-of-turn wait (server VAD: its silence window, then its
decision): the protocol carries no server timestamps to split it off.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields


class Segment(enum.Enum):
    """The five parts of a turn's latency, in the order they happen."""

    CAPTURE = "capture"
    UPLINK = "uplink"
    INFERENCE = "inference"
    DOWNLINK = "downlink"
    PLAYBACK = "playback"


@dataclass(frozen=True)
class TurnStamps:
    """Boundary times of one turn in milliseconds on the local clock; ``None`` = not reported.

    - ``speech_end_ms``: caller speech ended (VAD), or the transport's capture stamp
    - ``sent_ms``: we sent the turn's last audio (or the commit) to the brain
    - ``server_received_ms``: server received it / first response event, server clock
    - ``first_audio_delta_ms``: first audio delta of the response reached us
    - ``first_audio_written_ms``: the output transport wrote the first audio
    - ``playback_ms``: the transport reported the first audio played
    """

    speech_end_ms: float | None = None
    sent_ms: float | None = None
    server_received_ms: float | None = None
    first_audio_delta_ms: float | None = None
    first_audio_written_ms: float | None = None
    playback_ms: float | None = None

    def boundaries(self) -> dict[str, float | None]:
        """Every boundary by name, for the turn timeline."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def chain(self) -> tuple[float | None, ...]:
        """The six boundaries in the order a turn passes them."""
        return (
            self.speech_end_ms,
            self.sent_ms,
            self.server_received_ms,
            self.first_audio_delta_ms,
            self.first_audio_written_ms,
            self.playback_ms,
        )


@dataclass(frozen=True)
class LatencyBudget:
    """One turn's segments; ``None`` is unknown, negatives are kept and listed in ``skewed``."""

    stamps: TurnStamps
    segments: Mapping[Segment, float | None]
    end_to_end_ms: float | None
    first_audio_ms: float | None
    unattributed_ms: float | None
    skewed: frozenset[Segment]

    @property
    def measured(self) -> dict[Segment, float]:
        """Only the segments that could be measured."""
        return {s: ms for s, ms in self.segments.items() if ms is not None}

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for the timeline and the call report."""
        return {
            "boundaries_ms": self.stamps.boundaries(),
            "segments_ms": {s.value: ms for s, ms in self.segments.items()},
            "end_to_end_ms": self.end_to_end_ms,
            "first_audio_ms": self.first_audio_ms,
            "unattributed_ms": self.unattributed_ms,
            "skewed": sorted(s.value for s in self.skewed),
        }


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _unattributed(chain: tuple[float | None, ...], segments: list[float | None]) -> float | None:
    """Time between the first and last known boundary that no measured segment covers."""
    known = [ms for ms in chain if ms is not None]
    if len(known) < 2:
        return None
    return (known[-1] - known[0]) - sum(ms for ms in segments if ms is not None)


def budget(stamps: TurnStamps) -> LatencyBudget:
    """Split one turn's time into capture, uplink, inference, downlink and playback."""
    chain = stamps.chain()
    values = [_between(chain[i], chain[i + 1]) for i in range(len(Segment))]
    segments = dict(zip(Segment, values, strict=True))
    skewed = frozenset(s for s, ms in segments.items() if ms is not None and ms < 0)
    return LatencyBudget(
        stamps=stamps,
        segments=segments,
        end_to_end_ms=_between(stamps.speech_end_ms, stamps.playback_ms),
        first_audio_ms=_between(stamps.speech_end_ms, stamps.first_audio_written_ms),
        unattributed_ms=_unattributed(chain, values),
        skewed=skewed,
    )


@dataclass(frozen=True)
class Spread:
    """How one figure was distributed over a call's turns (milliseconds)."""

    measured: int
    unknown: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


def _percentile(ordered: list[float], fraction: float) -> float:
    # Nearest rank: always a value that was really measured.
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float | None]) -> Spread:
    """p50/p95/max of the known values; unknowns are counted, not averaged in."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return Spread(0, len(values), None, None, None)
    return Spread(
        measured=len(known),
        unknown=len(values) - len(known),
        p50_ms=_percentile(known, 0.50),
        p95_ms=_percentile(known, 0.95),
        max_ms=known[-1],
    )


def summarize(budgets: Sequence[LatencyBudget]) -> dict[str, Spread]:
    """Per-call summary for the report: each segment, first audio and end-to-end."""
    summary = {s.value: spread([b.segments[s] for b in budgets]) for s in Segment}
    summary["first_audio"] = spread([b.first_audio_ms for b in budgets])
    summary["end_to_end"] = spread([b.end_to_end_ms for b in budgets])
    return summary


class Boundary(enum.Enum):
    """The turn boundaries, in the order a turn passes them (see :class:`TurnStamps`)."""

    SPEECH_END = "speech_end_ms"
    SENT = "sent_ms"
    SERVER_RECEIVED = "server_received_ms"
    FIRST_AUDIO_DELTA = "first_audio_delta_ms"
    FIRST_AUDIO_WRITTEN = "first_audio_written_ms"
    PLAYBACK = "playback_ms"


_ORDER = {boundary: i for i, boundary in enumerate(Boundary)}


class TurnLatencyTracker:
    """Collects boundary marks as a call runs and cuts them into turns.

    Rules, so a driver can mark every event without bookkeeping of its own:
    before the response starts, a later speech end or send replaces an earlier
    one (the caller paused and went on); once the turn is past ``SENT``, a speech
    end starts the next turn and stray sends are ignored; every later boundary
    keeps its first mark (first audio is what the caller waits for).
    """

    def __init__(self) -> None:
        self.turns: list[LatencyBudget] = []
        self._marks: dict[Boundary, float] = {}

    def mark(self, boundary: Boundary, now_ms: float) -> LatencyBudget | None:
        """Record ``boundary`` at ``now_ms``; returns the previous turn if this starts one."""
        finished = None
        past_sent = any(_ORDER[b] > _ORDER[Boundary.SENT] for b in self._marks)
        if boundary is Boundary.SPEECH_END and past_sent:
            finished = self.finish()
        elif boundary is Boundary.SENT and past_sent:
            return None
        if boundary in (Boundary.SPEECH_END, Boundary.SENT) or boundary not in self._marks:
            self._marks[boundary] = now_ms
        return finished

    def finish(self) -> LatencyBudget | None:
        """Close the current turn (call end, or a turn that will get no more marks)."""
        if not self._marks:
            return None
        stamps = TurnStamps(**{b.value: self._marks.get(b) for b in Boundary})
        self._marks = {}
        result = budget(stamps)
        self.turns.append(result)
        return result
