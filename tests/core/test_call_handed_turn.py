"""Where the caller's unfinished turn starts in the audio handed to the brain taking the call."""

from __future__ import annotations

from voxpipe.call.user_audio import HAND_PRE_ROLL_MS, unfinished_turn_start_ms

WINDOW_MS = 32.0


def test_the_quiet_since_the_last_turn_is_not_handed_over() -> None:
    # A stall: 9 s of quiet while the reply played and the brain hung, then nothing said.
    quiet = [False] * int(9_000 / WINDOW_MS)
    assert unfinished_turn_start_ms(quiet, WINDOW_MS) is None
    assert unfinished_turn_start_ms([], WINDOW_MS) is None


def test_a_turn_under_way_is_handed_over_from_just_before_its_first_speech() -> None:
    # 6 s of quiet, then the caller starts a question (and pauses inside it).
    voiced = [False] * 187 + [True] * 20 + [False] * 10 + [True] * 15
    start = unfinished_turn_start_ms(voiced, WINDOW_MS)
    assert start == 187 * WINDOW_MS - HAND_PRE_ROLL_MS  # the pause inside the turn stays
    assert unfinished_turn_start_ms(voiced, WINDOW_MS, pre_roll_ms=0) == 187 * WINDOW_MS


def test_speech_at_the_very_start_keeps_everything() -> None:
    assert unfinished_turn_start_ms([False, False, True], WINDOW_MS) == 0.0
    assert unfinished_turn_start_ms([True], WINDOW_MS) == 0.0
