"""The playback ledger: what the caller heard, from the output's reports, never past what came."""

from __future__ import annotations

import random

import pytest

from voxpipe.audio import AudioFormat
from voxpipe.errors import LocalProtocolError
from voxpipe.playback import (
    PlaybackLedger,
    PlaybackReporter,
    PlaybackReports,
    TruncationAwaited,
    TruncationPlanned,
)

PCM_MS = 48  # bytes per ms, PCM16 24 kHz


def ledger_with(received_ms: int, key: str = "a") -> PlaybackLedger:
    ledger = PlaybackLedger()
    ledger.audio_received(key, received_ms * PCM_MS)
    ledger.utterance_began(key, 0)
    return ledger


# (chunk reports as (duration_ms, at_ms), query time, position heard)
@pytest.mark.parametrize(
    ("chunks", "now_ms", "heard"),
    [
        ([], 500, 0),  # nothing played yet
        ([(20, 0)], 10, 10),  # halfway through the first chunk
        ([(20, 0)], 500, 20),  # a chunk plays its length, no more
        ([(20, 0), (20, 20), (20, 40)], 50, 50),  # back to back, as a sound card plays
        # Reported ahead of time (sent twice as fast as played): still real time.
        ([(20, 0), (20, 10), (20, 20), (20, 30)], 50, 50),
        ([(20, 0), (20, 10), (20, 20), (20, 30)], 1000, 80),
        # A gap: the output ran dry for 100 ms, then played on.
        ([(20, 0), (20, 120)], 130, 30),
    ],
)
def test_position_follows_the_reported_chunks(
    chunks: list[tuple[int, int]], now_ms: int, heard: float
) -> None:
    ledger = ledger_with(1000)
    for duration, at in chunks:
        ledger.chunk_started(duration, at)
    assert ledger.played_ms("a", now_ms) == pytest.approx(heard)


def test_a_cut_freezes_the_position_and_later_chunks_are_not_heard() -> None:
    ledger = ledger_with(1000)
    ledger.chunk_started(20, 0)
    ledger.chunk_started(20, 20)
    ledger.playback_cut(30)
    ledger.chunk_started(20, 40)  # in flight behind the cut: never heard
    assert ledger.played_ms("a", 5_000) == 30
    assert ledger.current is None


@pytest.mark.parametrize(
    ("confirmed", "now_ms", "heard"),
    [
        ((100, 200), 200, 100),  # the far end is 100 ms behind what was sent
        ((100, 200), 250, 150),  # and plays on in real time after its report
        ((100, 200), 10_000, 400),  # never past what the output played
        ((500, 200), 200, 200),  # a confirmation ahead of the output is not believed
    ],
)
def test_a_confirmed_position_wins_over_the_sent_one(
    confirmed: tuple[int, int], now_ms: int, heard: float
) -> None:
    ledger = ledger_with(1000)
    for at in range(0, 400, 20):
        ledger.chunk_started(20, at)
    ledger.position_confirmed("a", *confirmed)
    assert ledger.played_ms("a", now_ms) == pytest.approx(heard)


def test_an_older_confirmation_never_replaces_a_newer_one() -> None:
    ledger = ledger_with(1000)
    ledger.chunk_started(400, 0)
    ledger.position_confirmed("a", 300, 350)
    ledger.position_confirmed("a", 100, 150)  # arrived late
    assert ledger.played_ms("a", 350) == 300


@pytest.mark.parametrize(
    ("received_ms", "played_until", "truncate_at"),
    [
        (1000, 400, 400),  # heard 400 of 1000 ms
        (1000, 5000, None),  # heard it all: nothing to truncate
        (300, 0, 0),  # nothing heard yet: the whole item goes
    ],
)
def test_truncation_is_what_was_heard(
    received_ms: int, played_until: int, truncate_at: int | None
) -> None:
    ledger = ledger_with(received_ms)
    ledger.chunk_started(received_ms, 0)
    plan = ledger.plan_truncation("a", played_until)
    assert (plan.audio_end_ms if plan else None) == truncate_at


def test_truncation_never_claims_audio_the_provider_did_not_send() -> None:
    ledger = PlaybackLedger()
    ledger.audio_received("a", 100 * PCM_MS + 47)  # a partial millisecond rounds down
    ledger.utterance_began("a", 0)
    ledger.chunk_started(150, 0)  # the output padded past what came
    assert ledger.received_ms("a") == 100
    assert ledger.plan_truncation("a", 120) is None  # all 100 ms were heard


def test_a_truncated_item_refuses_late_audio_and_is_cut_once() -> None:
    ledger = ledger_with(2000)
    ledger.chunk_started(2000, 0)
    plan = ledger.plan_truncation("a", 730)
    assert plan == TruncationPlanned("a", 0, 730, 730.0, 2000)
    assert not ledger.accepts_audio("a")
    assert ledger.audio_received("a", 100 * PCM_MS) is False
    assert ledger.received_ms("a") == 2000
    assert ledger.plan_truncation("a", 800) is None


@pytest.mark.parametrize(
    ("fmt", "n_bytes", "received_ms"),
    [(AudioFormat.PCM16_24K, 48_000, 1000), (AudioFormat.G711_ULAW, 8_000, 1000)],
)
def test_formats(fmt: AudioFormat, n_bytes: int, received_ms: int) -> None:
    ledger = PlaybackLedger(fmt)
    ledger.audio_received("a", n_bytes)
    assert ledger.received_ms("a") == received_ms


def test_played_out_once_every_received_millisecond_was_heard() -> None:
    ledger = ledger_with(40)
    ledger.chunk_started(20, 0)
    ledger.chunk_started(20, 20)
    assert not ledger.played_out("a", 30)
    assert ledger.played_out("a", 40)
    assert ledger.played_out("unknown", 0)


def test_reports_go_to_the_utterance_that_began_last() -> None:
    ledger = PlaybackLedger()
    ledger.audio_received("a", 100 * PCM_MS)
    ledger.audio_received("b", 100 * PCM_MS)
    ledger.utterance_began("a", 0)
    ledger.chunk_started(50, 0)
    ledger.utterance_began("b", 50)
    ledger.chunk_started(30, 50)
    assert (ledger.played_ms("a", 100), ledger.played_ms("b", 100)) == (50, 30)
    assert ledger.latest_item() == "b"
    ledger.forget("b")
    assert ledger.latest_item() == "a" and ledger.played_ms("b", 100) == 0


def test_memory_is_bounded_on_long_calls() -> None:
    ledger = PlaybackLedger(max_items=3)
    for i in range(10):
        ledger.audio_received(f"item{i}", PCM_MS)
    assert ledger.latest_item() == "item9"
    assert not ledger.has_item("item0") and ledger.received_ms("item0") == 0


@pytest.mark.parametrize(
    "report",
    [
        lambda ledger: ledger.audio_received("a", -1),
        lambda ledger: ledger.chunk_started(-5, 0),
    ],
)
def test_impossible_reports_raise_local_protocol_error(report: object) -> None:
    assert callable(report)
    with pytest.raises(LocalProtocolError):
        report(PlaybackLedger())


def test_reports_fan_out_and_the_file_output_is_a_reporter() -> None:
    from voxpipe.transports.file import FileOutputTransport

    first, second = PlaybackLedger(), PlaybackLedger()
    reports = PlaybackReports()
    for sink in (first, second, first):  # attaching twice reports once
        reports.attach(sink)
    reports.utterance_began("a", 0)
    reports.chunk_started(20, 0)
    assert first.played_ms("a", 100) == second.played_ms("a", 100) == 20
    assert issubclass(FileOutputTransport, PlaybackReporter)


@pytest.mark.parametrize("seed", range(20))
def test_random_reports_never_overrun(seed: int) -> None:
    """Whatever order audio, chunks, cuts and confirmations come in, no truncate overruns."""
    rng = random.Random(seed)
    ledger = PlaybackLedger(max_items=4)
    items = [f"item{i}" for i in range(6)]
    now = 0.0
    for _ in range(300):
        now += rng.random() * 30
        item = rng.choice(items)
        roll = rng.random()
        if roll < 0.3:
            ledger.audio_received(item, rng.randrange(0, 4_800))
        elif roll < 0.4:
            ledger.utterance_began(item, now)
        elif roll < 0.8:
            ledger.chunk_started(rng.choice([10, 20, 40]), now)
        elif roll < 0.85:
            ledger.playback_cut(now)
        elif roll < 0.9:
            ledger.position_confirmed(item, rng.random() * 2000, now)
        elif ledger.has_item(item):
            plan = ledger.plan_truncation(item, now)
            if plan is not None:
                assert 0 <= plan.audio_end_ms < plan.received_ms
                assert plan.audio_end_ms <= plan.played_ms
        assert ledger.played_ms(item, now) >= 0


# An output that reports where a cut stopped playback (a telephony provider's marks):
# (the cut position it reports and when, the settle time, the truncation expected)
@pytest.mark.parametrize(
    ("report", "settle_at", "truncate_at"),
    [
        ((640, 900), 900, 640),  # the far end had heard 640 ms, behind the 700 sent by the cut
        (None, 1600, "awaited"),  # not said yet: still waiting
        (None, 1700, 700),  # never said: past the deadline, the output's own position at the cut
        ((2500, 900), 900, None),  # heard it all: nothing to truncate
    ],
)
def test_a_truncation_waits_for_the_cut_position_the_output_reports(
    report: tuple[int, int] | None, settle_at: int, truncate_at: int | str | None
) -> None:
    ledger = ledger_with(2000)
    ledger.reports_cut_positions(1000)
    ledger.chunk_started(2000, 0)
    assert ledger.plan_truncation("a", 700) == TruncationAwaited("a", 1700)
    assert not ledger.accepts_audio("a")  # refused at once, whatever the wait
    if report is not None:
        ledger.cut_position("a", *report)
    plan = ledger.settle_truncation("a", settle_at)
    if truncate_at == "awaited":
        assert plan == TruncationAwaited("a", 1700)
    else:
        assert (plan.audio_end_ms if isinstance(plan, TruncationPlanned) else None) == truncate_at
        assert ledger.settle_truncation("a", settle_at + 100) is None  # settled once


def test_without_a_report_the_outputs_own_cut_wins_over_the_moment_of_decision() -> None:
    # The cut was decided at 700 ms; under load the output stopped sending only at 760.
    ledger = ledger_with(2000)
    ledger.reports_cut_positions(300)
    ledger.chunk_started(2000, 0)
    assert ledger.plan_truncation("a", 700) == TruncationAwaited("a", 1000)
    ledger.playback_cut(760)
    plan = ledger.settle_truncation("a", 1000)
    assert isinstance(plan, TruncationPlanned) and plan.audio_end_ms == 760


def test_an_item_not_yet_playing_is_truncated_at_once_and_a_late_report_changes_nothing() -> None:
    ledger = ledger_with(2000)
    ledger.reports_cut_positions(1000)
    assert ledger.plan_truncation("a", 700) == TruncationPlanned("a", 0, 0, 0.0, 2000)
    ledger.cut_position("a", 300, 900)  # not awaited: the truncate went out already
    assert ledger.settle_truncation("a", 900) is None


def test_the_first_cut_position_is_final() -> None:
    ledger = ledger_with(2000)
    ledger.reports_cut_positions(1000)
    ledger.chunk_started(2000, 0)
    ledger.plan_truncation("a", 700)
    ledger.cut_position("a", 640, 900)
    ledger.cut_position("a", 0, 950)
    assert ledger.played_ms("a", 5000) == 640
    plan = ledger.settle_truncation("a", 1000)
    assert isinstance(plan, TruncationPlanned) and plan.audio_end_ms == 640


def test_cut_reports_fan_out_and_must_come_within_a_positive_time() -> None:
    reports = PlaybackReports()
    ledger = ledger_with(2000)
    reports.attach(ledger)
    reports.reports_cut_positions(500)
    ledger.chunk_started(2000, 0)
    assert isinstance(ledger.plan_truncation("a", 700), TruncationAwaited)
    reports.cut_position("a", 650, 800)
    plan = ledger.settle_truncation("a", 800)
    assert isinstance(plan, TruncationPlanned) and plan.audio_end_ms == 650
    with pytest.raises(LocalProtocolError):
        ledger.reports_cut_positions(0)
