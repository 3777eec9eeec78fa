"""What the caller heard: the playback seam and the ledger behind it.

Truncating an interrupted reply must use the audio the caller actually heard,
never a wall-clock guess, and never more than the provider sent (or the
provider answers "Audio content of Xms is already shorter than Yms"). One
ledger per call answers both questions, per assistant item (the *utterance*):

- the brain records what it received (:meth:`PlaybackLedger.audio_received`);
- the output transport reports what it played, through the small
  :class:`PlaybackSink` protocol: an utterance began, a chunk started playing
  at ``t``, playback was cut at ``t``, and, where the far end can say so, a
  position it *confirmed* (telephony marks, a browser's playout counters).

An output whose far end says where a cut stopped playback only after a round
trip (a telephony provider returns its pending marks when told to clear)
declares so with :meth:`PlaybackSink.reports_cut_positions`; a truncation then
waits for that :meth:`PlaybackSink.cut_position` (:class:`TruncationAwaited`)
instead of guessing at the moment of the cut, and the call asks again with
:meth:`PlaybackLedger.settle_truncation`.

Every output transport of a realtime graph must report playback: it is a
:class:`PlaybackReporter`, or the graph refuses to build (see
:func:`voxpipe.pipelines.realtime.build_realtime_pipeline`).

Sans-I/O: every report carries its ``now_ms``; the ledger never reads a clock.
Playback is modelled as a sound card does it: a chunk starts at the later of
its report and the end of the chunk before it, and plays for its duration, so
a transport that reports chunks as it *sends* them (ahead of the far end)
still yields a real-time position.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from voxpipe.audio import AudioFormat, bytes_to_ms
from voxpipe.errors import LocalProtocolError


class PlaybackSink(Protocol):
    """What an output transport reports, on its own clock (``now_ms``)."""

    def utterance_began(self, key: str, now_ms: float) -> None:
        """The audio that follows belongs to utterance ``key`` (an assistant item id)."""

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        """A chunk of ``duration_ms`` of the current utterance began playing at ``now_ms``."""

    def playback_cut(self, now_ms: float) -> None:
        """Playback stopped at ``now_ms`` (an interruption): nothing more of it is heard."""

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        """The far end confirmed that ``played_ms`` of ``key`` had been heard by ``now_ms``."""

    def reports_cut_positions(self, within_ms: float) -> None:
        """From now on, after each cut the output says where playback stopped (``cut_position``).

        It does so within ``within_ms`` of the cut; a truncation waits that long for it.
        """

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        """After a cut, ``played_ms`` of ``key`` had been heard when playback stopped: final."""


@runtime_checkable
class PlaybackReporter(Protocol):
    """An output transport that tells the call what the caller heard.

    ``report_playback_to`` attaches a sink (the call's ledger); ``now_ms`` is
    the clock its reports use, which the call reads when it truncates.
    """

    def report_playback_to(self, sink: PlaybackSink) -> None:
        """Send every playback report from now on to ``sink`` as well."""

    def now_ms(self) -> float:
        """The transport's clock, in milliseconds."""


class PlaybackReports:
    """Fan-out of playback reports to the sinks attached to one output transport."""

    def __init__(self) -> None:
        self.sinks: list[PlaybackSink] = []

    def attach(self, sink: PlaybackSink) -> None:
        if sink not in self.sinks:
            self.sinks.append(sink)

    def utterance_began(self, key: str, now_ms: float) -> None:
        for sink in self.sinks:
            sink.utterance_began(key, now_ms)

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        for sink in self.sinks:
            sink.chunk_started(duration_ms, now_ms)

    def playback_cut(self, now_ms: float) -> None:
        for sink in self.sinks:
            sink.playback_cut(now_ms)

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        for sink in self.sinks:
            sink.position_confirmed(key, played_ms, now_ms)

    def reports_cut_positions(self, within_ms: float) -> None:
        for sink in self.sinks:
            sink.reports_cut_positions(within_ms)

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        for sink in self.sinks:
            sink.cut_position(key, played_ms, now_ms)


@dataclasses.dataclass(frozen=True)
class TruncationPlanned:
    """Send ``conversation.item.truncate`` with these values.

    ``audio_end_ms`` is ``played_ms`` clamped to ``received_ms``; the other two
    are kept so the driver can report the truncation error it avoided.
    """

    item_id: str
    content_index: int
    audio_end_ms: int
    played_ms: float
    received_ms: int


@dataclasses.dataclass(frozen=True)
class TruncationAwaited:
    """The output will say where the cut stopped ``item_id``: settle it again by ``deadline_ms``."""

    item_id: str
    deadline_ms: float


@dataclasses.dataclass
class _Utterance:
    received_bytes: int = 0
    # The current run of back-to-back chunks: it began at run_start_ms, when
    # run_pos_ms had been played, and plays until run_end_ms.
    run_pos_ms: float = 0.0
    run_start_ms: float | None = None
    run_end_ms: float = 0.0
    cut_ms: float | None = None  # the final position once playback was cut
    confirmed: tuple[float, float] | None = None  # (played_ms, at now_ms) from the far end
    truncated: bool = False
    final_ms: float | None = None  # where the output said a cut stopped it
    awaited_until_ms: float | None = None  # a truncation waits for final_ms until then
    decided_ms: float | None = None  # the position when the cut was decided (a fallback)

    def local_ms(self, now_ms: float) -> float:
        """The transport's position by ``now_ms``."""
        if self.cut_ms is not None:
            return self.cut_ms
        if self.run_start_ms is None:
            return self.run_pos_ms
        elapsed = min(self.run_end_ms, max(now_ms, self.run_start_ms)) - self.run_start_ms
        return self.run_pos_ms + elapsed


class PlaybackLedger:
    """Received and heard audio per utterance, for one call (a :class:`PlaybackSink`).

    ``max_items`` bounds memory on long calls: the oldest utterances are
    forgotten (they can no longer be truncated, and need not be).
    """

    def __init__(self, fmt: AudioFormat = AudioFormat.PCM16_24K, *, max_items: int = 64) -> None:
        self._fmt = fmt
        self._max_items = max_items
        self._items: OrderedDict[str, _Utterance] = OrderedDict()
        self.current: str | None = None  # the utterance the transport is playing
        self._cut_report_ms: float | None = None  # the output reports cut positions this fast

    @property
    def audio_format(self) -> AudioFormat:
        """The encoding of the provider's audio, by which received bytes are counted."""
        return self._fmt

    # -- what the transport reports (PlaybackSink) ---------------------------------

    def utterance_began(self, key: str, now_ms: float) -> None:
        """The audio that follows belongs to ``key``."""
        self.current = key
        self._item(key)

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        """A chunk of the current utterance began playing (or was sent) at ``now_ms``."""
        if duration_ms < 0:
            raise LocalProtocolError(f"negative chunk duration {duration_ms}")
        item = self._item(self.current if self.current is not None else "")
        if item.cut_ms is not None:
            return  # a cut utterance plays nothing more
        if item.run_start_ms is not None and now_ms <= item.run_end_ms:
            item.run_end_ms += duration_ms  # back to back, as a sound card plays them
            return
        item.run_pos_ms = item.local_ms(now_ms)  # the run before (if any) ended: a gap
        item.run_start_ms, item.run_end_ms = now_ms, now_ms + duration_ms

    def playback_cut(self, now_ms: float) -> None:
        """Playback stopped at ``now_ms``: every utterance's position is final."""
        for item in self._items.values():
            if item.cut_ms is None and item.run_start_ms is not None:
                item.cut_ms = item.local_ms(now_ms)
                item.run_start_ms = None
        self.current = None

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        """The far end heard ``played_ms`` of ``key`` by ``now_ms``; a later report wins."""
        item = self._item(key)
        if item.confirmed is None or now_ms >= item.confirmed[1]:
            item.confirmed = (max(0.0, played_ms), now_ms)

    def reports_cut_positions(self, within_ms: float) -> None:
        """Truncations wait up to ``within_ms`` for the output's :meth:`cut_position`."""
        if within_ms <= 0:
            raise LocalProtocolError(f"cut positions must come within a positive time: {within_ms}")
        self._cut_report_ms = within_ms

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        """Where the cut stopped ``key``: its final position (the first report wins)."""
        item = self._items.get(key)
        if item is None or item.final_ms is not None:
            return  # forgotten, or already settled
        if not item.truncated and item.cut_ms is None:
            return  # no cut of this item yet: a stray report, not where a cut stopped it
        item.final_ms = max(0.0, played_ms)

    # -- what the brain reports ----------------------------------------------------

    def audio_received(self, key: str, n_bytes: int) -> bool:
        """``n_bytes`` of ``key`` arrived from the provider; False once ``key`` was truncated."""
        if n_bytes < 0:
            raise LocalProtocolError(f"negative audio size for {key}: {n_bytes}")
        item = self._item(key)
        if item.truncated:
            return False
        item.received_bytes += n_bytes
        return True

    # -- what the call asks ------------------------------------------------------

    def has_item(self, key: str) -> bool:
        """Whether the ledger holds a record of ``key``."""
        return key in self._items

    def latest_item(self) -> str | None:
        """The utterance most recently started, the one an interruption cuts."""
        return next(reversed(self._items), None)

    def accepts_audio(self, key: str) -> bool:
        """False once ``key`` was truncated: its late audio must not be played."""
        item = self._items.get(key)
        return item is None or not item.truncated

    def received_ms(self, key: str) -> int:
        """Whole milliseconds of ``key`` received from the provider (0 if unknown)."""
        item = self._items.get(key)
        return 0 if item is None else bytes_to_ms(item.received_bytes, self._fmt)

    def played_ms(self, key: str, now_ms: float) -> float:
        """Milliseconds of ``key`` the caller heard by ``now_ms`` (0 if unknown).

        The transport's own position; once the far end confirmed a position,
        that one carried forward in real time, never past the transport's.
        """
        item = self._items.get(key)
        if item is None:
            return 0.0
        if item.final_ms is not None:
            return item.final_ms
        local = item.local_ms(now_ms)
        if item.confirmed is None:
            return local
        confirmed, at_ms = item.confirmed
        return min(local, confirmed + max(0.0, now_ms - at_ms))

    def played_out(self, key: str, now_ms: float) -> bool:
        """Whether everything received of ``key`` has been heard (or playback was cut)."""
        item = self._items.get(key)
        if item is None or item.cut_ms is not None:
            return True
        return self.played_ms(key, now_ms) >= self.received_ms(key) - 1

    def plan_truncation(
        self, key: str, now_ms: float
    ) -> TruncationPlanned | TruncationAwaited | None:
        """Plan the truncate for an interrupted ``key``: its position is final from now on.

        The item refuses later audio, and what it plays after ``now_ms`` (in
        flight to the output) does not count as heard. When the output reports
        cut positions and ``key`` was playing, the plan waits for that report:
        :class:`TruncationAwaited` (ask :meth:`settle_truncation` again).

        None when there is nothing to truncate: ``key`` is unknown, was already
        truncated, or was heard in full.
        """
        item = self._items.get(key)
        if item is None or item.truncated:
            return None
        item.truncated = True
        played = self.played_ms(key, now_ms)
        started = item.run_start_ms is not None or played > 0 or item.confirmed is not None
        if self._cut_report_ms is not None and started and item.final_ms is None:
            # The output's own cut (when it stopped sending) freezes the position, not now;
            # if it never reports one, the position now is the fallback.
            item.awaited_until_ms = now_ms + self._cut_report_ms
            item.decided_ms = played
            return TruncationAwaited(key, item.awaited_until_ms)
        if item.cut_ms is None:
            item.cut_ms = item.local_ms(now_ms)  # nothing past the truncation counts as heard
        return self._planned(key, played)

    def settle_truncation(
        self, key: str, now_ms: float
    ) -> TruncationPlanned | TruncationAwaited | None:
        """An awaited truncation: planned once the output said where ``key`` stopped.

        Past its deadline without a report, it is planned at the output's own
        position at the cut. None when there is nothing (more) to truncate.
        """
        item = self._items.get(key)
        if item is None or item.awaited_until_ms is None:
            return None
        if item.final_ms is None and now_ms < item.awaited_until_ms:
            return TruncationAwaited(key, item.awaited_until_ms)
        item.awaited_until_ms = None
        if item.final_ms is not None:
            played = item.final_ms
        elif item.cut_ms is not None:
            played = item.cut_ms  # the output stopped sending there
        else:
            played = item.decided_ms if item.decided_ms is not None else item.local_ms(now_ms)
        item.cut_ms = played if item.cut_ms is None else item.cut_ms
        return self._planned(key, played)

    def _planned(self, key: str, played: float) -> TruncationPlanned | None:
        received = self.received_ms(key)
        if played >= received:
            return None
        return TruncationPlanned(
            item_id=key,
            content_index=0,  # the protocol only truncates the first (audio) part
            audio_end_ms=int(played),
            played_ms=played,
            received_ms=received,
        )

    def forget(self, key: str) -> None:
        """Drop ``key`` (deleted from the conversation)."""
        self._items.pop(key, None)
        if self.current == key:
            self.current = None

    def _item(self, key: str) -> _Utterance:
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = _Utterance()
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)
        return item
