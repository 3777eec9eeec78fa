"""The mark tracker: what the caller heard, from the marks a provider returns, whatever the latency.

A small far end is simulated as Twilio (and Telnyx) documents it: it plays
what it received at real time from its buffer (after a jitter delay), returns
each mark once the audio before it has played, and on ``clear`` drops its
buffer and returns every pending mark at once; a mark sent when nothing is
left to play comes back at once. As Plivo documents it (``acknowledges``), a
clear drops the pending checkpoints for good and is answered by
``clearedAudio``. The network delays each way by ``latency_ms``.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import pytest

from voxpipe.errors import ConfigError
from voxpipe.telephony.marks import (
    AcknowledgmentIgnored,
    CutConfirmed,
    CutEstimated,
    MarkIgnored,
    MarkIgnoredReason,
    MarksLate,
    MarkTracker,
    PlayoutEvent,
    PlayoutState,
    PositionConfirmed,
    SendMark,
)

CHUNK_MS = 20


@dataclass
class FarEnd:
    """Twilio's playback of one utterance, and the tracker fed in time order."""

    latency_ms: float
    jitter_ms: float = 0.0  # how long the far end buffers before it starts playing
    pace_ms: float = CHUNK_MS  # the sender's gap between 20 ms chunks (10: twice real time)
    returns_marks: bool = True
    acknowledges: bool = False  # Plivo: checkpoints cleared are never returned; clearedAudio
    tracker: MarkTracker = field(default_factory=MarkTracker)
    events: list[PlayoutEvent] = field(default_factory=list)
    _queue: list[tuple[float, int, str, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _played_until: float = 0.0  # when the far end's buffer runs dry

    def play(self, key: str, audio_ms: float, cut_at: float | None) -> float:
        """Send ``audio_ms`` of ``key`` from t=0, cut at ``cut_at``; what the caller heard."""
        heard = 0.0
        clear_arrives = None if cut_at is None else cut_at + self.latency_ms
        self._sent(0.0, self.tracker.utterance_began(key, 0.0), self._played_until, clear_arrives)
        for i in range(int(audio_ms // CHUNK_MS)):
            sent_at = i * self.pace_ms
            if cut_at is not None and sent_at >= cut_at:
                break
            start = max(
                sent_at + self.latency_ms + (self.jitter_ms if i == 0 else 0.0), self._played_until
            )
            self._played_until = start + CHUNK_MS
            end = (
                self._played_until
                if clear_arrives is None
                else min(self._played_until, clear_arrives)
            )
            heard += max(0.0, end - start)
            self._push(sent_at, "send", "")
            mark = self.tracker.media_sent(CHUNK_MS, sent_at)
            self._sent(sent_at, mark, self._played_until, clear_arrives)
        if cut_at is not None:
            self._push(cut_at, "clear", "")
        self._run()
        return heard

    def _sent(
        self, at: float, mark: SendMark | None, plays_at: float, clear_arrives: float | None
    ) -> None:
        if mark is None or not self.returns_marks:
            return
        plays_at = max(plays_at, at + self.latency_ms)  # nothing left to play: at once
        if clear_arrives is not None and plays_at > clear_arrives:
            if self.acknowledges:
                return  # dropped with the audio before it
            plays_at = clear_arrives  # returned by the clear, with the burst
        self._push(plays_at + self.latency_ms, "echo", mark.name)

    def _push(self, at: float, kind: str, name: str) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), kind, name))

    def _run(self) -> None:
        while self._queue:
            at, _, kind, name = heapq.heappop(self._queue)
            if kind == "echo":
                self.events += self.tracker.mark_echoed(name, at)
            elif kind == "clear" and self.acknowledges:
                self.tracker.clear_sent(at)
                if self.returns_marks:
                    self._push(at + 2 * self.latency_ms, "ack", "")
            elif kind == "clear":
                probe = self.tracker.cleared(at)
                if self.returns_marks:
                    self._push(at + 2 * self.latency_ms, "echo", probe.name)
            elif kind == "ack":
                self.events += self.tracker.clear_acknowledged(at)
        self.events += self.tracker.tick(10_000)

    def cut(self) -> CutConfirmed | CutEstimated:
        return next(e for e in self.events if isinstance(e, CutConfirmed | CutEstimated))


# (one-way latency, far-end jitter delay, sender's pace, cut at): the heard position is exact.
@pytest.mark.parametrize(
    ("latency_ms", "jitter_ms", "pace_ms", "cut_at"),
    [
        (0, 0, 20, 1230),
        (60, 0, 20, 1230),
        (150, 0, 20, 1230),
        (150, 80, 20, 1230),  # the far end buffers 80 ms before it plays
        (60, 0, 10, 1230),  # the bot bursting at twice real time fills Twilio's buffer
        (150, 0, 16, 777),  # at 1.25 times real time
        (60, 0, 20, 50),  # cut within the first mark interval
    ],
)
def test_a_cut_is_placed_where_the_far_end_stopped(
    latency_ms: float, jitter_ms: float, pace_ms: float, cut_at: float
) -> None:
    far = FarEnd(latency_ms, jitter_ms, pace_ms)
    heard = far.play("item_1", 3000, cut_at)
    cut = far.cut()
    assert isinstance(cut, CutConfirmed) and cut.key == "item_1"
    assert cut.played_ms == pytest.approx(heard, abs=1.0), (cut.played_ms, heard)
    assert cut.at_ms == pytest.approx(cut_at + 2 * latency_ms)
    assert far.tracker.state is PlayoutState.PLAYING


def test_marks_confirm_positions_as_the_far_end_plays_them() -> None:
    far = FarEnd(latency_ms=60)
    far.play("item_1", 400, cut_at=None)
    confirmed = [(e.played_ms, e.at_ms) for e in far.events if isinstance(e, PositionConfirmed)]
    # Each mark comes back when its audio has played (+ the way back), every 100 ms.
    assert confirmed == [(0, 120), (100, 220), (200, 320), (300, 420), (400, 520)]


def test_when_marks_never_come_back_the_cut_is_estimated_and_said_to_be() -> None:
    far = FarEnd(latency_ms=60, returns_marks=False)
    far.play("item_1", 3000, cut_at=1230)
    cut = far.cut()
    # The position sent by the clear: what a far end that plays on arrival had heard.
    assert cut == CutEstimated("item_1", 1240, 10_000)


def test_a_clear_settles_once_and_its_late_marks_are_ignored() -> None:
    tracker = MarkTracker(confirm_within_ms=1000)
    begin = tracker.utterance_began("a", 0)
    marks = [tracker.media_sent(20, t) for t in range(0, 200, 20)]
    probe = tracker.cleared(200)
    assert tracker.deadline_ms == 1200
    assert tracker.tick(1199) == []
    assert tracker.tick(1200) == [CutEstimated("a", 200, 1200)]
    assert tracker.tick(5000) == []
    late = next(m for m in marks if m is not None)
    assert tracker.mark_echoed(late.name, 1300) == [MarkIgnored(late.name, MarkIgnoredReason.LATE)]
    assert tracker.mark_echoed(probe.name, 1300) == [
        MarkIgnored(probe.name, MarkIgnoredReason.LATE)
    ]
    assert tracker.mark_echoed("made-up", 1300) == [
        MarkIgnored("made-up", MarkIgnoredReason.UNKNOWN)
    ]
    assert begin.name.startswith("a@0ms/")


def test_marks_that_stop_coming_back_are_reported_once() -> None:
    tracker = MarkTracker(confirm_within_ms=1000)
    tracker.utterance_began("a", 0)
    for t in range(0, 2000, 20):
        tracker.media_sent(20, t)
    assert tracker.tick(999) == []
    assert tracker.tick(1500) == [MarksLate(1500)]
    assert tracker.tick(1800) == []  # said once


def test_a_cut_across_two_utterances_places_each() -> None:
    tracker = MarkTracker()
    first = tracker.utterance_began("a", 0)
    a_marks = [tracker.media_sent(20, t) for t in range(0, 200, 20)]  # 200 ms of "a"
    tracker.mark_echoed(first.name, 0)
    for mark in a_marks:
        if mark is not None:
            tracker.mark_echoed(mark.name, 200)
    second = tracker.utterance_began("b", 200)
    b_marks = [tracker.media_sent(20, t) for t in range(200, 400, 20)]
    tracker.mark_echoed(second.name, 200)  # "b" began playing at 200
    b_100, b_200 = (m for m in b_marks if m is not None)
    tracker.mark_echoed(b_100.name, 300)
    probe = tracker.cleared(330)
    # The clear lands at once: "b" played 130 ms; its pending mark returns with the probe.
    tracker.mark_echoed(b_200.name, 330)
    assert tracker.mark_echoed(probe.name, 330) == [CutConfirmed("b", 130, 330)]


def test_audio_without_a_beginning_is_marked_all_the_same() -> None:
    tracker = MarkTracker(interval_ms=40)
    assert tracker.media_sent(20, 0) is None  # begun and marked at 0 under ""
    mark = tracker.media_sent(20, 20)
    assert mark is not None and mark.name.startswith("@40ms/")


@pytest.mark.parametrize(
    "settings",
    [{"interval_ms": 0}, {"confirm_within_ms": -1}, {"burst_window_ms": 100}],
)
def test_impossible_settings_are_a_config_error(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        MarkTracker(**settings)


def test_one_interruption_cleared_twice_is_settled_by_the_first_probe_back() -> None:
    # 100 ms each way: "a" plays from 100; a mark at N ms comes back at 200 + N.
    tracker = MarkTracker()
    begin = tracker.utterance_began("a", 0)
    sent = [tracker.media_sent(20, t) for t in range(0, 460, 20)]
    marks = [m for m in sent if m is not None]  # at 100, 200, 300, 400 ms
    tracker.mark_echoed(begin.name, 200)
    for position, mark in zip((100, 200, 300, 400), marks, strict=True):
        assert tracker.mark_echoed(mark.name, 200 + position) == [
            PositionConfirmed("a", position, 200 + position)
        ]
    first = tracker.cleared(460)  # reaches Twilio at 560, when 460 ms had played
    second = tracker.cleared(470)  # the same barge-in, reported again
    assert tracker.mark_echoed(first.name, 660) == [CutConfirmed("a", 460, 660)]
    assert tracker.mark_echoed(second.name, 661) == [
        MarkIgnored(second.name, MarkIgnoredReason.LATE)
    ]
    assert tracker.state is PlayoutState.PLAYING


def test_a_reply_that_begins_before_the_probe_is_back_keeps_its_marks() -> None:
    tracker = MarkTracker()
    tracker.utterance_began("a", 0)
    for t in range(0, 200, 20):
        tracker.media_sent(20, t)
    probe = tracker.cleared(200)
    begin_b = tracker.utterance_began("b", 250)  # the next reply, while the burst is on its way
    assert [type(e) for e in tracker.mark_echoed(probe.name, 400)] == [CutConfirmed]
    assert tracker.mark_echoed(begin_b.name, 450) == [PositionConfirmed("b", 0, 450)]


# Plivo: the last checkpoint played before clearedAudio, plus the time between their arrivals.
@pytest.mark.parametrize(
    ("latency_ms", "jitter_ms", "pace_ms", "cut_at"),
    [
        (0, 0, 20, 1230),
        (60, 0, 20, 1230),
        (150, 0, 20, 1230),
        (150, 80, 20, 1230),
        (60, 0, 10, 1230),  # bursting at twice real time
        (150, 0, 16, 777),
        (60, 0, 20, 50),
    ],
)
def test_plivo_a_cut_is_placed_from_its_checkpoints_and_its_acknowledgment(
    latency_ms: float, jitter_ms: float, pace_ms: float, cut_at: float
) -> None:
    far = FarEnd(latency_ms, jitter_ms, pace_ms, acknowledges=True)
    heard = far.play("item_1", 3000, cut_at)
    cut = far.cut()
    assert isinstance(cut, CutConfirmed) and cut.key == "item_1"
    assert cut.played_ms == pytest.approx(heard, abs=1.0), (cut.played_ms, heard)
    assert far.tracker.state is PlayoutState.PLAYING
    # Every checkpoint the clear dropped is forgotten: nothing is owed, nothing reported late.
    assert far.tracker.deadline_ms is None
    assert not [e for e in far.events if isinstance(e, MarksLate)]


def test_plivo_without_an_acknowledgment_the_cut_is_estimated() -> None:
    far = FarEnd(latency_ms=60, returns_marks=False, acknowledges=True)
    far.play("item_1", 3000, cut_at=1230)
    assert far.cut() == CutEstimated("item_1", 1240, 10_000)
    # The acknowledgment that comes after all is late, and settles nothing.
    assert far.tracker.clear_acknowledged(10_100) == [AcknowledgmentIgnored(MarkIgnoredReason.LATE)]
    assert far.tracker.clear_acknowledged(10_200) == [
        AcknowledgmentIgnored(MarkIgnoredReason.UNKNOWN)
    ]
