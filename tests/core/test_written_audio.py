"""The output's per-chunk record of the bot's audio stays bounded over a long call (issue 19).

The file transport once kept a record of every 20 ms chunk for the whole call
(180,000 an hour). A synthetic hour of replies, every fourth one cut mid-way,
goes to the playback ledger (which plans the truncation) and the written log
alike: the log stays within its bound, and what it says was written of a cut
reply is what the ledger truncates it to, whether the reply began a second or
three minutes before the cut.
"""

from __future__ import annotations

import bisect
import random

import pytest

from voxpipe.playback import PlaybackLedger, TruncationPlanned
from voxpipe.written_audio import AudioWritten, WrittenAudio

CHUNK_MS = 20
KEEP = 3_000


def test_an_hour_of_replies_keeps_a_bounded_log_and_every_cut_matches_the_ledger() -> None:
    rng = random.Random(19)
    ledger, log = PlaybackLedger(), WrittenAudio(keep=KEEP)
    now = 0.0
    longest = 0
    cuts = 0
    spoken = 0.0
    replies = 0
    while now < 3_600_000:
        key = f"item_{replies}"
        # Mostly 1-8 s replies; one in fifty a 3-minute monologue (longer than the bound).
        length = 9_000 if replies % 50 == 49 else rng.randint(50, 400)
        cut_after = rng.randint(1, length - 1) if replies % 4 == 3 else None
        ledger.audio_received(key, length * CHUNK_MS * 48)
        ledger.utterance_began(key, now)
        began = now
        for _ in range(length if cut_after is None else cut_after):
            ledger.chunk_started(CHUNK_MS, now)
            log.append(AudioWritten(now, CHUNK_MS, key))
            spoken += CHUNK_MS
            now += CHUNK_MS
            longest = max(longest, len(log))
        if cut_after is not None:
            ledger.playback_cut(now)
            plan = ledger.plan_truncation(key, now)
            assert isinstance(plan, TruncationPlanned)
            mine = [w for w in log if w.utterance == key]
            assert plan.audio_end_ms == cut_after * CHUNK_MS == log.written_ms(key)
            assert sum(w.duration_ms for w in mine) == plan.audio_end_ms  # every chunk still there
            assert mine[0].at_ms == began
            cuts += 1
        now += rng.randint(200, 3_000)  # the caller's turn
        replies += 1
    assert cuts > 100
    assert longest <= 2 * KEEP + 9_000  # the bound plus the longest reply, never the hour
    assert log.total_ms == spoken  # totals never forget
    assert log.dropped + len(log) == spoken / CHUNK_MS
    # Recent chunks are all there, in order, for latency look-ups by time.
    recent = now - 30_000
    index = bisect.bisect_left(log, recent, key=lambda w: w.at_ms)
    assert 0 < index < len(log) and log[index - 1].at_ms < recent <= log[index].at_ms


def test_audio_of_no_utterance_is_never_protected() -> None:
    log = WrittenAudio(keep=10)
    for n in range(1_000):
        log.append(AudioWritten(n * CHUNK_MS, CHUNK_MS, None))
    assert len(log) <= 20 and log.total_ms == 20_000
    assert log[-1].at_ms == 999 * CHUNK_MS


@pytest.mark.parametrize(("keep", "utterances"), [(0, 1), (1, 0)])
def test_bounds_must_be_positive(keep: int, utterances: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WrittenAudio(keep=keep, keep_utterances=utterances)
