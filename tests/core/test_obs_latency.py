"""Latency budget math: segments a person can trust when asking "where did the time go"."""

from __future__ import annotations

import pytest

from voxpipe.observability.latency import (
    Boundary,
    Segment,
    Spread,
    TurnLatencyTracker,
    TurnStamps,
    budget,
    spread,
    summarize,
)

ALL = TurnStamps(
    speech_end_ms=1000,
    sent_ms=1020,
    server_received_ms=1060,
    first_audio_delta_ms=1600,
    first_audio_written_ms=1625,
    playback_ms=1705,
)


def test_full_stamps_give_five_segments_that_add_up() -> None:
    result = budget(ALL)
    assert result.segments == {
        Segment.CAPTURE: 20,
        Segment.UPLINK: 40,
        Segment.INFERENCE: 540,
        Segment.DOWNLINK: 25,
        Segment.PLAYBACK: 80,
    }
    assert result.end_to_end_ms == 705
    assert result.first_audio_ms == 625
    assert result.unattributed_ms == 0
    assert result.skewed == frozenset()


# Each row: the stamps a transport reports; which segments must be unknown;
# the end-to-end figure (None when a bound is missing).
@pytest.mark.parametrize(
    ("stamps", "unknown", "end_to_end"),
    [
        # No server stamp (most brains): uplink and inference merge into unattributed.
        (
            TurnStamps(1000, 1020, None, 1600, 1625, 1705),
            {Segment.UPLINK, Segment.INFERENCE},
            705,
        ),
        # No playback report (file transport): playback and end-to-end unknown.
        (TurnStamps(1000, 1020, 1060, 1600, 1625, None), {Segment.PLAYBACK}, None),
        # No capture stamp: capture and end-to-end unknown.
        (TurnStamps(None, 1020, 1060, 1600, 1625, 1705), {Segment.CAPTURE}, None),
        # Nothing at all.
        (TurnStamps(), set(Segment), None),
    ],
)
def test_missing_stamps_give_unknown_segments_never_invented(
    stamps: TurnStamps, unknown: set[Segment], end_to_end: float | None
) -> None:
    result = budget(stamps)
    assert {s for s, ms in result.segments.items() if ms is None} == unknown
    assert result.end_to_end_ms == end_to_end
    if result.end_to_end_ms is not None:
        assert result.unattributed_ms is not None
        total = sum(result.measured.values()) + result.unattributed_ms
        assert total == pytest.approx(result.end_to_end_ms)


def test_gap_in_the_middle_is_reported_as_unattributed_time() -> None:
    result = budget(TurnStamps(1000, 1020, None, 1600, 1625, 1705))
    assert result.unattributed_ms == 580
    assert result.measured == {Segment.CAPTURE: 20, Segment.DOWNLINK: 25, Segment.PLAYBACK: 80}


def test_server_clock_behind_ours_is_flagged_not_hidden() -> None:
    # Server clock 100 ms behind: uplink comes out negative.
    result = budget(TurnStamps(1000, 1020, 960, 1600, 1625, 1705))
    assert result.segments[Segment.UPLINK] == -60
    assert result.skewed == frozenset({Segment.UPLINK})
    assert result.as_dict()["skewed"] == ["uplink"]
    assert result.end_to_end_ms == 705  # local-clock figures are unaffected


def test_timeline_carries_every_boundary_by_name() -> None:
    boundaries = TurnStamps(1000, None, None, 1600, 1625, None).boundaries()
    assert boundaries == {
        "speech_end_ms": 1000,
        "sent_ms": None,
        "server_received_ms": None,
        "first_audio_delta_ms": 1600,
        "first_audio_written_ms": 1625,
        "playback_ms": None,
    }
    assert budget(ALL).as_dict()["segments_ms"] == {
        "capture": 20,
        "uplink": 40,
        "inference": 540,
        "downlink": 25,
        "playback": 80,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100.0, 200.0, 300.0, None], Spread(3, 1, 200.0, 300.0, 300.0)),
        ([float(v) for v in range(1, 101)], Spread(100, 0, 50.0, 95.0, 100.0)),
        ([None, None], Spread(0, 2, None, None, None)),
        ([], Spread(0, 0, None, None, None)),
    ],
)
def test_spread_reports_measured_percentiles_and_counts_unknowns(
    values: list[float | None], expected: Spread
) -> None:
    assert spread(values) == expected


def test_call_summary_covers_every_segment_and_the_totals() -> None:
    turns = [budget(ALL), budget(TurnStamps(2000, 2030, None, 2900, 2925, None))]
    summary = summarize(turns)
    assert summary["capture"] == Spread(2, 0, 20, 30, 30)
    assert summary["inference"] == Spread(1, 1, 540, 540, 540)
    assert summary["first_audio"].max_ms == 925
    assert summary["end_to_end"].unknown == 1


SE, SENT, SRV, DELTA, WRITTEN, PLAYED = Boundary


def _run(marks: list[tuple[Boundary, float]]) -> list[TurnStamps]:
    tracker = TurnLatencyTracker()
    finished = [tracker.mark(boundary, t) for boundary, t in marks]
    last = tracker.finish()
    assert [b for b in finished if b is not None] + ([last] if last else []) == tracker.turns
    return [turn.stamps for turn in tracker.turns]


@pytest.mark.parametrize(
    ("marks", "turns"),
    [
        # One clean turn.
        (
            [(SE, 1000), (SENT, 1020), (SRV, 1060), (DELTA, 1600), (WRITTEN, 1625), (PLAYED, 1705)],
            [TurnStamps(1000, 1020, 1060, 1600, 1625, 1705)],
        ),
        # The caller paused and went on: the later speech end and send count.
        (
            [(SE, 1000), (SENT, 1010), (SE, 2000), (SENT, 2010), (DELTA, 2500)],
            [TurnStamps(2000, 2010, None, 2500, None, None)],
        ),
        # Streaming deltas and sends during the answer: first audio stays first,
        # and the next speech end opens turn two.
        (
            [(SE, 0), (SENT, 10), (DELTA, 600), (DELTA, 650), (SENT, 700), (WRITTEN, 620),
             (WRITTEN, 640), (SE, 5000), (SENT, 5010), (DELTA, 5400)],
            [TurnStamps(0, 10, None, 600, 620, None),
             TurnStamps(5000, 5010, None, 5400, None, None)],
        ),
        # Nothing marked: no turn.
        ([], []),
    ],
)  # fmt: skip
def test_tracker_cuts_marks_into_turns(
    marks: list[tuple[Boundary, float]], turns: list[TurnStamps]
) -> None:
    assert _run(marks) == turns


def test_report_form_carries_the_boundaries() -> None:
    tracker = TurnLatencyTracker()
    tracker.mark(SE, 100)
    tracker.mark(WRITTEN, 900)
    turn = tracker.finish()
    assert turn is not None
    assert turn.as_dict()["boundaries_ms"] == {
        "speech_end_ms": 100,
        "sent_ms": None,
        "server_received_ms": None,
        "first_audio_delta_ms": None,
        "first_audio_written_ms": 900,
        "playback_ms": None,
    }
    assert turn.first_audio_ms == 800
