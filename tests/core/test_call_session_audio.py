"""The session audio log: which caller frame holds a server VAD position, or that none does."""

from __future__ import annotations

import pytest

from voxpipe.call import AudioAppended, SessionAudioLog

MS20 = 20 * 48  # 20 ms of 24 kHz PCM16


def _live_call(frames: int, *, start_ms: float = 1_000.0) -> SessionAudioLog:
    """Frames 100, 101, ... of 20 ms each, sent 20 ms apart from ``start_ms``."""
    log = SessionAudioLog()
    for i in range(frames):
        log.on_append(MS20, frame_id=100 + i, now_ms=start_ms + 20 * i)
    return log


@pytest.mark.parametrize(
    ("position_ms", "frame_id", "offset_ms", "sent_at_ms"),
    [
        (0, 100, 0.0, 1_000.0),  # the very start belongs to the first append
        (5, 100, 5.0, 1_000.0),
        (20, 100, 20.0, 1_000.0),  # the audio just before 20 ms is frame 100's
        (20.5, 101, 0.5, 1_020.0),
        (199, 109, 19.0, 1_180.0),
        (200, 109, 20.0, 1_180.0),  # the end of everything sent
    ],
)
def test_a_position_names_the_frame_holding_the_audio_just_before_it(
    position_ms: float, frame_id: int, offset_ms: float, sent_at_ms: float
) -> None:
    located = _live_call(10).locate(position_ms)
    assert located is not None
    assert located.frame_id == frame_id
    assert located.offset_ms == pytest.approx(offset_ms)
    assert located.append.sent_at_ms == sent_at_ms


@pytest.mark.parametrize("position_ms", [200.5, 5_000, -1])
def test_a_position_outside_what_was_sent_is_unknown(position_ms: float) -> None:
    assert _live_call(10).locate(position_ms) is None


def test_nothing_sent_means_nothing_located() -> None:
    assert SessionAudioLog().locate(0) is None


def test_replayed_audio_advances_the_position_but_names_no_frame() -> None:
    log = SessionAudioLog()
    log.on_append(MS20 * 50, frame_id=None, now_ms=5_000.0)  # 1 s replayed at once
    log.on_append(MS20, frame_id=7, now_ms=5_001.0)
    replayed = log.locate(600)
    assert replayed is not None and replayed.frame_id is None
    live = log.locate(1_010)
    assert live is not None and (live.frame_id, live.offset_ms) == (7, 10.0)
    assert log.position_ms == 1_020


def test_a_new_session_starts_its_positions_at_zero() -> None:
    log = _live_call(10)
    log.new_session()
    assert log.position_ms == 0 and len(log) == 0
    assert log.locate(100) is None
    log.on_append(MS20, frame_id=42, now_ms=9_000.0)
    located = log.locate(10)
    assert located is not None and located.frame_id == 42


def test_memory_is_bounded_by_audio_length_and_old_positions_become_unknown() -> None:
    log = SessionAudioLog(keep_ms=1_000)
    for i in range(500):  # 10 s of 20 ms frames
        log.on_append(MS20, frame_id=i, now_ms=float(i))
    assert len(log) <= 51
    assert log.locate(8_000) is None  # pruned: unknown, not guessed
    located = log.locate(9_990)
    assert located is not None and located.frame_id == 499


def test_an_empty_append_is_not_remembered_and_odd_sizes_keep_exact_positions() -> None:
    log = SessionAudioLog()
    assert log.on_append(0, frame_id=1, now_ms=0.0) == AudioAppended(0.0, 0.0, 1, 0.0)
    assert len(log) == 0
    log.on_append(1_000, frame_id=2, now_ms=1.0)  # a resampler's uneven output
    assert log.position_ms == pytest.approx(1_000 / 48)


@pytest.mark.parametrize("kwargs", [{"bytes_per_ms": 0}, {"keep_ms": -1}])
def test_nonsense_configuration_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SessionAudioLog(**kwargs)  # type: ignore[arg-type]


def test_a_frame_sent_in_this_session_reports_when_it_went_out() -> None:
    log = _live_call(10)
    assert log.sent_at(100) == 1_000.0
    assert log.sent_at(107) == 1_140.0
    assert log.sent_at(999) is None  # never sent
    log.new_session()
    assert log.sent_at(107) is None  # sent in an earlier session: not this one's to report
