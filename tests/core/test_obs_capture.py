"""The capture log: caller frames by id and by position, bounded, time passed in."""

from __future__ import annotations

import pytest

from voxpipe.observability.capture import CaptureLog


def _paced(frames: int, *, keep: int = 1_500) -> CaptureLog:
    """Frames 10, 11, ... of 20 ms, captured on their slot from 1000 ms."""
    log = CaptureLog(keep=keep)
    for i in range(frames):
        log.append(10 + i, 20.0, 1_000.0 + 20 * i)
    return log


@pytest.mark.parametrize(
    ("position_ms", "frame_id", "captured_ms"),
    [
        (0.0, 10, 1_000.0),
        (19.5, 10, 1_019.5),
        (20.0, 11, 1_020.0),  # a chunk holds [start, end): 20 ms is the next one's start
        (199.0, 19, 1_199.0),
    ],
)
def test_a_position_falls_in_one_chunk_and_is_captured_at_its_offset(
    position_ms: float, frame_id: int, captured_ms: float
) -> None:
    chunk = _paced(10).at_position(position_ms)
    assert chunk is not None and chunk.frame_id == frame_id
    assert chunk.captured_at(position_ms) == pytest.approx(captured_ms)


@pytest.mark.parametrize("position_ms", [-1.0, 200.0, 5_000.0])
def test_a_position_outside_the_logged_audio_is_unknown(position_ms: float) -> None:
    assert _paced(10).at_position(position_ms) is None


def test_frames_are_found_by_id_and_odd_lengths_keep_exact_positions() -> None:
    log = CaptureLog()
    log.append(1, 20.0, 0.0)
    log.append(2, 12.5, 25.0)  # a short last chunk, captured late (a slow device)
    log.append(3, 20.0, 40.0)
    assert log.position_ms == 52.5
    second = log.by_frame(2)
    assert second is not None and (second.start_ms, second.end_ms) == (20.0, 32.5)
    assert log.at_position(32.4) == second
    assert log.by_frame(99) is None


def test_memory_is_bounded_and_forgotten_frames_are_unknown() -> None:
    log = _paced(10, keep=4)
    assert len(log) == 4
    assert log.by_frame(10) is None and log.by_frame(19) is not None
    assert log.at_position(10.0) is None  # before what is remembered
    assert log.at_position(190.0) is not None


@pytest.mark.parametrize(("keep", "duration"), [(0, 20.0), (5, -1.0)])
def test_nonsense_is_refused(keep: int, duration: float) -> None:
    with pytest.raises(ValueError):
        CaptureLog(keep=keep).append(1, duration, 0.0)
