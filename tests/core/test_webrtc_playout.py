"""Playout reports: what the page played becomes a position in the utterance the caller heard."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from voxpipe.audio import AudioFormat
from voxpipe.errors import ConfigError, LocalProtocolError
from voxpipe.playback import PlaybackLedger
from voxpipe.webrtc.playout import (
    RTP_MODULUS,
    PlayoutMapper,
    PlayoutReport,
    PositionHeard,
    ReportIgnored,
)

ORIGIN = 1_234_567_890  # the sender's random RTP timestamp at stream position 0
PAGE_T0 = 1_733_220_000_000.0  # page clock (epoch ms, as Chromium's SSRC timestamps are)


def report(
    stream_ms: float, *, age_ms: float = 0, delay_ms: float = 0, at: float = 0
) -> dict[str, object]:
    """A page report for the frame at ``stream_ms``, delivered ``age_ms`` before the report."""
    now = PAGE_T0 + at
    rtp = (ORIGIN + round(stream_ms * 48)) % RTP_MODULUS
    return {"rtp": rtp, "ssrc_ts": now - age_ms, "now": now, "delay_ms": delay_ms}


def heard(message: Mapping[str, object], origin: int = ORIGIN, clock_rate: int = 48_000) -> float:
    parsed = PlayoutReport.from_message(message)
    assert isinstance(parsed, PlayoutReport)
    return PlayoutMapper(origin, clock_rate).heard_stream_ms(parsed)


# -- the heard position -----------------------------------------------------------


HEARD: list[tuple[str, dict[str, object], float]] = [
    ("the first frame", report(0), 0),
    ("one second in", report(1000), 1000),
    ("the frame has played on for 15 ms", report(1000, age_ms=15), 1015),
    ("and the device is 40 ms behind", report(1000, age_ms=15, delay_ms=40), 975),
    ("never negative", report(10, delay_ms=40), 0),
    ("just before the origin is 0, not 24.9 h in", report(-10), 0),
    ("two page clocks a hair apart: no age", report(1000, age_ms=-3), 1000),
    ("no delay stats: 0", {"rtp": ORIGIN + 4800, "ssrc_ts": 5.0, "now": 5.0}, 100),
]


@pytest.mark.parametrize(
    ("message", "position_ms"), [h[1:] for h in HEARD], ids=[h[0] for h in HEARD]
)
def test_the_heard_position_is_rtp_plus_age_minus_device_delay(
    message: dict[str, object], position_ms: float
) -> None:
    assert heard(message) == pytest.approx(position_ms)


@pytest.mark.parametrize(
    ("origin", "rtp", "clock_rate", "position_ms"),
    [
        (RTP_MODULUS - 24_000, 24_000, 48_000, 1000),  # the origin sits just before a wrap
        (0, RTP_MODULUS - 1, 48_000, 0),  # one sample before the origin
        (ORIGIN, ORIGIN + 16_000, 16_000, 1000),  # another clock rate
    ],
)
def test_rtp_arithmetic_is_modulo_2_32(
    origin: int, rtp: int, clock_rate: int, position_ms: float
) -> None:
    message = {"rtp": rtp, "ssrc_ts": 0.0, "now": 0.0, "delay_ms": 0.0}
    assert heard(message, origin, clock_rate) == pytest.approx(position_ms)


def test_a_call_longer_than_the_rtp_clock_wraps_keeps_counting() -> None:
    """32 bits of a 48 kHz clock wrap after 24.9 h; a report every 10 minutes follows it."""
    mapper = PlayoutMapper(ORIGIN)
    mapper.audio_sent("greeting", 0, 26 * 3_600_000)
    ten_minutes = 600_000
    for i in range(1, 26 * 6 + 1):  # 26 hours
        position = mapper.report_received(report(i * ten_minutes, at=i * ten_minutes))
        assert position is not None and position.stream_ms == pytest.approx(i * ten_minutes)


@pytest.mark.parametrize("page_clock_offset_ms", [-PAGE_T0, -3_600_000, 0, 9e12])
def test_the_page_clock_is_never_compared_with_anything_but_itself(
    page_clock_offset_ms: float,
) -> None:
    message = report(2000, age_ms=12, delay_ms=30)
    shifted = {
        **message,
        "now": float(message["now"]) + page_clock_offset_ms,  # type: ignore[arg-type]
        "ssrc_ts": float(message["ssrc_ts"]) + page_clock_offset_ms,  # type: ignore[arg-type]
    }
    assert heard(shifted) == pytest.approx(1982)


# -- which reports are used -----------------------------------------------------


def test_only_the_newest_report_by_page_time_moves_the_position() -> None:
    mapper = PlayoutMapper(ORIGIN)
    mapper.audio_sent("a", 0, 5000)
    first = mapper.report_received(report(1000, at=1000))
    third = mapper.report_received(report(3000, at=3000))
    second = mapper.report_received(report(2000, at=2000))  # overtaken on the way
    duplicate = mapper.report_received(report(3000, at=3000))
    assert [p.played_ms if p else None for p in (first, third, second, duplicate)] == [
        1000,
        3000,
        None,
        None,
    ]
    assert mapper.ignored[ReportIgnored.STALE] == 2
    assert mapper.newest == PlayoutReport.from_message(report(3000, at=3000))


GOOD = report(1000, age_ms=10, delay_ms=30)
GARBAGE: list[tuple[str, object, ReportIgnored]] = [
    ("not an object", "rtp=1", ReportIgnored.MALFORMED),
    ("a list", [1, 2, 3], ReportIgnored.MALFORMED),
    ("empty", {}, ReportIgnored.MALFORMED),
    ("no audio yet", {**GOOD, "rtp": None}, ReportIgnored.MALFORMED),
    ("rtp as text", {**GOOD, "rtp": "123"}, ReportIgnored.MALFORMED),
    ("rtp fractional", {**GOOD, "rtp": 1.5}, ReportIgnored.MALFORMED),
    ("rtp a boolean", {**GOOD, "rtp": True}, ReportIgnored.MALFORMED),
    ("now missing", {k: v for k, v in GOOD.items() if k != "now"}, ReportIgnored.MALFORMED),
    ("now NaN", {**GOOD, "now": math.nan}, ReportIgnored.MALFORMED),
    ("now infinite", {**GOOD, "now": math.inf}, ReportIgnored.MALFORMED),
    ("ssrc_ts a 400-digit integer", {**GOOD, "ssrc_ts": 10**400}, ReportIgnored.MALFORMED),
    ("delay as text", {**GOOD, "delay_ms": "30"}, ReportIgnored.MALFORMED),
    ("rtp negative", {**GOOD, "rtp": -1}, ReportIgnored.OUT_OF_RANGE),
    ("rtp past 32 bits", {**GOOD, "rtp": RTP_MODULUS}, ReportIgnored.OUT_OF_RANGE),
    ("negative delay", {**GOOD, "delay_ms": -5}, ReportIgnored.OUT_OF_RANGE),
    ("a 5 s device delay", {**GOOD, "delay_ms": 5000}, ReportIgnored.OUT_OF_RANGE),
    # Playout stalled a second ago, or the two page times are on different clocks
    # (performance.now() against an epoch SSRC timestamp).
    ("a stale frame", report(1000, age_ms=1000), ReportIgnored.OUT_OF_RANGE),
    ("clocks apart", {**GOOD, "ssrc_ts": 5.0}, ReportIgnored.OUT_OF_RANGE),
]


@pytest.mark.parametrize(
    ("message", "reason"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE]
)
def test_garbage_is_ignored_and_counted(message: object, reason: ReportIgnored) -> None:
    mapper = PlayoutMapper(ORIGIN)
    mapper.audio_sent("a", 0, 5000)
    assert mapper.report_received(message) is None
    assert mapper.ignored == {r: int(r is reason) for r in ReportIgnored}
    assert mapper.newest is None
    # and the next good report is read as if nothing had come before it
    assert mapper.report_received(GOOD) == PositionHeard("a", 980, 980)


# -- positions in utterances ------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_ms", "located"),
    [
        (0, None),  # the silence before the first reply
        (1999, None),
        (2000, ("item_1", 0)),
        (3500, ("item_1", 1500)),
        (5000, ("item_1", 2000)),  # its audio ran out at 4 s: silence since, not heard reply
        (6000, ("item_2", 0)),
        (6000.5, ("item_2", 0.5)),
        (60_000, ("item_3", 3000)),  # long after its end: all of it, no more
    ],
)
def test_a_stream_position_falls_in_the_audio_sent_last_before_it(
    stream_ms: float, located: tuple[str, float] | None
) -> None:
    mapper = PlayoutMapper(ORIGIN)
    for key, began_ms, length_ms in (("item_1", 2000, 2000), ("item_2", 6000, 3000)):
        mapper.audio_sent(key, began_ms, length_ms)
    mapper.audio_sent("item_3", 10_000, 3000)
    assert mapper.locate(stream_ms) == located


@pytest.mark.parametrize(
    ("stream_ms", "heard_ms"),
    [
        (2500, 500),
        (3000, 1000),  # the end of the first stretch
        (3900, 1000),  # 1.5 s of silence the track filled in while the reply was late
        (4499, 1000),
        (4500, 1000),  # the reply goes on
        (5000, 1500),
        (5020, 1520),  # chunk after chunk: one stretch
        (6000, 2040),  # the second stretch ended at 2040 ms of the reply
    ],
)
def test_silence_the_track_filled_in_mid_reply_is_not_heard_reply(
    stream_ms: float, heard_ms: float
) -> None:
    """Under load the reply's audio came late: the stream went on in silence for 1.5 s."""
    mapper = PlayoutMapper(ORIGIN)
    for at in range(2000, 3000, 20):  # 20 ms chunks, back to back
        mapper.audio_sent("item_1", at, 20)
    for at in range(4500, 5540, 20):
        mapper.audio_sent("item_1", at, 20)
    assert mapper.locate(stream_ms) == ("item_1", pytest.approx(heard_ms))


def test_only_the_latest_stretches_are_held() -> None:
    mapper = PlayoutMapper(ORIGIN, max_stretches=2)
    for i in range(3):
        mapper.audio_sent(f"item_{i}", i * 1000, 800)
    assert mapper.locate(500) is None  # item_0 was forgotten
    assert mapper.locate(1500) == ("item_1", 500)


def test_audio_out_of_stream_order_is_our_bug() -> None:
    mapper = PlayoutMapper(ORIGIN)
    mapper.audio_sent("item_1", 5000, 20)
    with pytest.raises(LocalProtocolError, match="only moves forward"):
        mapper.audio_sent("item_2", 4000, 20)
    with pytest.raises(LocalProtocolError, match="negative"):
        mapper.audio_sent("item_1", 6000, -20)


def test_a_rejoined_peer_connection_keeps_the_utterances() -> None:
    mapper = PlayoutMapper(ORIGIN)
    mapper.audio_sent("item_1", 2000, 8000)
    assert mapper.report_received(report(3000, at=3000)) == PositionHeard("item_1", 1000, 3000)
    new_origin = 77  # the new sender's RTP clock at stream position 0
    mapper.sender_changed(new_origin)
    rejoined = {"rtp": new_origin + 48 * 5000, "ssrc_ts": PAGE_T0 + 9000, "now": PAGE_T0 + 9000}
    assert mapper.report_received(rejoined) == PositionHeard("item_1", 3000, 5000)


@pytest.mark.parametrize(
    "kwargs",
    [{"origin_rtp": -1}, {"origin_rtp": RTP_MODULUS}, {"origin_rtp": 0, "clock_rate": 0}],
)
def test_an_impossible_origin_or_clock_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        PlayoutMapper(**kwargs)


# -- into the playback ledger ------------------------------------------------------


def test_truncation_follows_what_the_page_played_not_what_the_server_sent() -> None:
    """The server sent 1.5 s of the reply; the page had played 1.2 s of it when the user spoke."""
    ledger, mapper = PlaybackLedger(AudioFormat.PCM16_24K), PlayoutMapper(ORIGIN)
    ledger.audio_received("item_1", 3000 * 48)  # 3 s of 24 kHz PCM16 from the brain
    ledger.utterance_began("item_1", now_ms=10_000)  # server clock
    ledger.chunk_started(3000, now_ms=10_000)
    mapper.audio_sent("item_1", stream_ms=2000, duration_ms=3000)  # after 2 s of silence

    # Page time 500 s into its clock; the frame at 3.2 s was delivered 8 ms ago,
    # the device plays 20 ms behind delivery.
    heard_now = mapper.report_received(report(3212, age_ms=8, delay_ms=20, at=500_000))
    assert heard_now == PositionHeard("item_1", pytest.approx(1200), pytest.approx(3200))  # type: ignore[arg-type]
    ledger.position_confirmed(heard_now.key, heard_now.played_ms, now_ms=11_500)

    plan = ledger.plan_truncation("item_1", now_ms=11_500)
    assert plan is not None and plan.audio_end_ms == 1200  # not the 1500 ms sent
