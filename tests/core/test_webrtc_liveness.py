"""Peer liveness: a browser that dies ends its call within 5 s, not aiortc's 26-28 s."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voxpipe.errors import ConfigError, LocalProtocolError
from voxpipe.webrtc.liveness import Alive, Dead, DeadReason, PeerLiveness, Verdict

D = DeadReason
Event = tuple[Callable[[PeerLiveness, float], None], float]
OPENED, CONNECTED, HEARD, CLOSED = (
    PeerLiveness.opened,
    PeerLiveness.connected,
    PeerLiveness.heard,
    PeerLiveness.closed,
)


def pings(start_ms: int, stop_ms: int, every_ms: int = 1000) -> list[Event]:
    return [(HEARD, t) for t in range(start_ms, stop_ms + 1, every_ms)]


def fed(events: list[Event], **timeouts: float) -> PeerLiveness:
    liveness = PeerLiveness(**timeouts)
    for event, at_ms in events:
        event(liveness, at_ms)
    return liveness


OPEN_AND_CONNECT: list[Event] = [(OPENED, 0.0), (CONNECTED, 300.0)]

# (what happens, the events, when asked, the verdict)
SCENARIOS: list[tuple[str, list[Event], float, Verdict]] = [
    ("a browser pinging every second stays alive",
     OPEN_AND_CONNECT + pings(1000, 20_000), 20_500, Alive(True, 25_000)),
    ("its tab killed after the ping at 7 s: alive until 12 s",
     OPEN_AND_CONNECT + pings(1000, 7000), 11_999, Alive(True, 12_000)),
    ("and dead from 12 s",
     OPEN_AND_CONNECT + pings(1000, 7000), 12_000, Dead(D.SILENT, 12_000)),
    ("asked late, death is dated at the deadline that passed",
     OPEN_AND_CONNECT, 60_000, Dead(D.SILENT, 5300)),
    ("a ping after the deadline does not bring it back",
     [*OPEN_AND_CONNECT, (HEARD, 6000)], 6000, Dead(D.SILENT, 5300)),
    ("an offer that never connects: waiting",
     [(OPENED, 0)], 9999, Alive(False, 10_000)),
    ("an offer that never connects: dead at 10 s",
     [(OPENED, 0)], 10_000, Dead(D.NEVER_CONNECTED, 10_000)),
    ("a message before the connected event means connected",
     [(OPENED, 0), (HEARD, 500)], 5000, Alive(True, 5500)),
    ("closed: dead at once",
     [*OPEN_AND_CONNECT, (CLOSED, 2000)], 2000, Dead(D.CLOSED, 2000)),
    ("closed before connecting",
     [(OPENED, 0), (CLOSED, 50)], 100, Dead(D.CLOSED, 50)),
    ("nothing heard after a close revives it",
     [*OPEN_AND_CONNECT, (CLOSED, 2000), (HEARD, 2100)], 2100, Dead(D.CLOSED, 2000)),
    ("closing a peer already silent keeps the first cause",
     [*OPEN_AND_CONNECT, (CLOSED, 9000)], 9000, Dead(D.SILENT, 5300)),
    ("a late, out-of-order report does not rewind the clock",
     [*OPEN_AND_CONNECT, (HEARD, 4000), (HEARD, 2000)], 8999, Alive(True, 9000)),
    ("reconnected after an ICE restart is a sign of life",
     [*OPEN_AND_CONNECT, (CONNECTED, 4000)], 8000, Alive(True, 9000)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "asked_at", "verdict"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_the_verdict_follows_what_was_heard_and_when(
    events: list[Event], asked_at: float, verdict: Verdict
) -> None:
    assert fed(events).verdict(asked_at) == verdict


def test_asking_does_not_change_the_answer() -> None:
    """Death is a function of the events, not of when or how often the driver polls."""
    polled = fed(OPEN_AND_CONNECT)
    for t in range(0, 20_000, 250):
        polled.verdict(t)
    polled.heard(6000)  # too late
    assert polled.verdict(20_000) == fed([*OPEN_AND_CONNECT, (HEARD, 6000)]).verdict(20_000)


@pytest.mark.parametrize("dies_at_ms", [1000, 1001, 1500, 1999, 7321, 30_000])
def test_a_dead_browser_is_found_within_5_s_by_a_driver_that_waits_for_the_deadline(
    dies_at_ms: int,
) -> None:
    liveness = fed(OPEN_AND_CONNECT + pings(1000, dies_at_ms))  # pings stop when it dies
    now: float = dies_at_ms
    verdict = liveness.verdict(now)
    while isinstance(verdict, Alive):  # the driver sleeps until each deadline
        now = verdict.deadline_ms
        verdict = liveness.verdict(now)
    assert verdict.reason is D.SILENT
    assert 0 < now - dies_at_ms <= 5000
    assert verdict.at_ms == now


@pytest.mark.parametrize(
    ("timeouts", "events", "asked_at", "verdict"),
    [
        ({"timeout_ms": 2000}, OPEN_AND_CONNECT, 2300, Dead(D.SILENT, 2300)),
        ({"connect_timeout_ms": 3000}, [(OPENED, 0)], 3000, Dead(D.NEVER_CONNECTED, 3000)),
    ],
)
def test_the_timeouts_are_configurable(
    timeouts: dict[str, float], events: list[Event], asked_at: float, verdict: Verdict
) -> None:
    assert fed(events, **timeouts).verdict(asked_at) == verdict


@pytest.mark.parametrize(
    "events",
    [
        [(HEARD, 0)],
        [(CONNECTED, 0)],
        [(CLOSED, 0)],
        [(OPENED, 0), (OPENED, 1)],
    ],
)
def test_events_out_of_protocol_are_our_bug(events: list[Event]) -> None:
    with pytest.raises(LocalProtocolError):
        fed(events)


def test_a_verdict_before_opening_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        PeerLiveness().verdict(0)


@pytest.mark.parametrize("timeouts", [{"timeout_ms": 0}, {"connect_timeout_ms": -1}])
def test_non_positive_timeouts_are_refused(timeouts: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        PeerLiveness(**timeouts)
