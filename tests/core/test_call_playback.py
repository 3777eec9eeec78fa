"""Playback tracker: truncate to what was heard, never past what was received."""

from __future__ import annotations

import random

import pytest

from voxpipe.audio import AudioFormat
from voxpipe.call.playback import (
    AudioReceived,
    PlaybackAdvanced,
    PlaybackFinished,
    PlaybackInput,
    PlaybackTracker,
    TruncationPlanned,
)
from voxpipe.errors import LocalProtocolError

PCM_MS = 48  # bytes per ms, PCM16 24 kHz


@pytest.mark.parametrize(
    ("inputs", "received_ms", "played_ms", "truncate_at"),
    [
        # Heard 400 of 1000 ms: truncate at 400.
        ([AudioReceived("a", 1000 * PCM_MS), PlaybackAdvanced("a", 400)], 1000, 400, 400),
        # Transport clock ran past the received audio (padding): clamp to 1000.
        ([AudioReceived("a", 1000 * PCM_MS), PlaybackAdvanced("a", 1085)], 1000, 1085, 1000),
        # A stale, smaller position never moves playback back.
        (
            [
                AudioReceived("a", 1000 * PCM_MS),
                PlaybackAdvanced("a", 600),
                PlaybackAdvanced("a", 500),
            ],
            1000,
            600,
            600,
        ),
        # Partial millisecond of audio rounds down: never claim audio the server lacks.
        ([AudioReceived("a", 100 * PCM_MS + 47), PlaybackAdvanced("a", 200)], 100, 200, 100),
        # Nothing heard yet: truncate at 0 drops the whole item.
        ([AudioReceived("a", 500 * PCM_MS)], 500, 0, 0),
        # Deltas accumulate.
        ([AudioReceived("a", 10 * PCM_MS)] * 30 + [PlaybackAdvanced("a", 250)], 300, 250, 250),
    ],
)
def test_truncate_point(
    inputs: list[PlaybackInput], received_ms: int, played_ms: int, truncate_at: int
) -> None:
    tracker = PlaybackTracker()
    for event in inputs:
        assert tracker.handle(event)
    assert tracker.received_ms("a") == received_ms
    assert tracker.played_ms("a") == played_ms
    assert tracker.truncate_point("a") == truncate_at


@pytest.mark.parametrize(
    ("fmt", "n_bytes", "received_ms"),
    [(AudioFormat.PCM16_24K, 48_000, 1000), (AudioFormat.G711_ULAW, 8_000, 1000)],
)
def test_formats(fmt: AudioFormat, n_bytes: int, received_ms: int) -> None:
    tracker = PlaybackTracker(fmt)
    tracker.handle(AudioReceived("a", n_bytes))
    assert tracker.received_ms("a") == received_ms


def test_plan_truncation_on_barge_in_then_drops_late_audio() -> None:
    tracker = PlaybackTracker()
    tracker.handle(AudioReceived("a", 2000 * PCM_MS))
    tracker.handle(PlaybackAdvanced("a", 730))
    plan = tracker.plan_truncation("a")
    assert plan == TruncationPlanned("a", 0, 730, 730, 2000)
    # Audio still in flight from the cancelled response must not be played.
    assert not tracker.accepts_audio("a")
    assert tracker.handle(AudioReceived("a", 100 * PCM_MS)) is False
    assert tracker.received_ms("a") == 2000
    # A second interruption of the same item plans nothing.
    assert tracker.plan_truncation("a") is None


def test_fully_heard_item_needs_no_truncation() -> None:
    tracker = PlaybackTracker()
    tracker.handle(AudioReceived("a", 300 * PCM_MS))
    tracker.handle(PlaybackFinished("a", 300, interrupted=False))
    assert tracker.plan_truncation("a") is None


def test_interrupted_finish_truncates_at_reported_position() -> None:
    tracker = PlaybackTracker()
    tracker.handle(AudioReceived("a", 900 * PCM_MS))
    tracker.handle(PlaybackFinished("a", 420, interrupted=True))
    plan = tracker.plan_truncation("a")
    assert plan is not None and plan.audio_end_ms == 420
    assert tracker.unplayed_ms("a") == 480


def test_items_are_independent_and_latest_is_tracked() -> None:
    tracker = PlaybackTracker()
    assert tracker.latest_item() is None
    tracker.handle(AudioReceived("a", 100 * PCM_MS))
    tracker.handle(AudioReceived("b", 200 * PCM_MS))
    tracker.handle(PlaybackAdvanced("b", 50))
    assert tracker.latest_item() == "b"
    assert (tracker.truncate_point("a"), tracker.truncate_point("b")) == (0, 50)
    tracker.forget("b")
    assert tracker.latest_item() == "a"


def test_memory_is_bounded_on_long_calls() -> None:
    tracker = PlaybackTracker(max_items=3)
    for i in range(10):
        tracker.handle(AudioReceived(f"item{i}", PCM_MS))
    assert tracker.latest_item() == "item9"
    with pytest.raises(LocalProtocolError):
        tracker.truncate_point("item0")
    assert tracker.received_ms("item7") == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.truncate_point("unknown"),
        lambda t: t.plan_truncation("unknown"),
        lambda t: t.handle(AudioReceived("a", -1)),
    ],
)
def test_bugs_raise_local_protocol_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(LocalProtocolError):
        call(PlaybackTracker())


@pytest.mark.parametrize("seed", range(20))
def test_random_feeds_never_overrun(seed: int) -> None:
    """Whatever order deltas, positions and interruptions come in, no overrun."""
    rng = random.Random(seed)
    tracker = PlaybackTracker(max_items=4)
    items = [f"item{i}" for i in range(6)]
    for _ in range(300):
        item = rng.choice(items)
        roll = rng.random()
        if roll < 0.5:
            tracker.handle(AudioReceived(item, rng.randrange(0, 4_800)))
        elif roll < 0.9:
            tracker.handle(PlaybackAdvanced(item, rng.randrange(0, 5_000)))
        elif tracker.has_item(item):
            plan = tracker.plan_truncation(item)
            if plan is not None:
                assert 0 <= plan.audio_end_ms <= plan.received_ms
                assert plan.audio_end_ms <= plan.played_ms
        if tracker.has_item(item):
            assert 0 <= tracker.truncate_point(item) <= tracker.received_ms(item)
