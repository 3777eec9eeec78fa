"""Joining a Daily room that cannot be joined fails fast, by name, and leaves nothing running.

Against the daily-python stand-in (``tests/support/fake_daily.py``): no such
room, an expired token, a private room without one, a join that never
answers; against the real daily-python with no network (this machine reaches
only package registries): the room's API is unreachable. Each fails within
the join timeout with a :class:`~voxpipe.errors.DailyJoinFailed` that says
why, writes no artifacts, and leaves no task of the call behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fake_daily import FakeRoom, call_tasks, installed

from voxpipe.cli import main
from voxpipe.daily.joins import join_failed, room_name
from voxpipe.errors import DailyJoinFailed, DailyJoinFailure, Side
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.transports.daily.call import DailyCall, RoomOptions
from voxpipe.transports.realtime_server import ScriptedBrain

SERVER_MODULES = ("realtime_server", "aiohttp", "websockets")


@asynccontextmanager
async def agent_spec(tmp_path: Path) -> AsyncIterator[LiveCallSpec]:
    async with embedded_realtime(Mode.REALTIME, None, None, ScriptedBrain(["Hello."])) as (
        url,
        key,
    ):
        yield LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")


async def failed_join(options: RoomOptions, tmp_path: Path) -> tuple[DailyJoinFailed, float]:
    """Run the call to its failure: the error, and how long it took."""
    async with agent_spec(tmp_path) as spec:
        before = asyncio.all_tasks()
        started = time.monotonic()
        with pytest.raises(DailyJoinFailed) as failure:
            await DailyCall(options, spec).run()
        took = time.monotonic() - started
        print(f"\n{options.room_url}: {failure.value.reason.value} after {took:.2f} s")
        assert call_tasks(before, ignore=SERVER_MODULES) == []  # nothing of the call is left
    assert not list((tmp_path / "calls").glob("*"))  # no call took place: no artifacts
    return failure.value, took


@pytest.mark.parametrize(
    ("room", "token", "reason"),
    [
        (FakeRoom(), None, DailyJoinFailure.ROOM_NOT_FOUND),  # joins another room's URL
        (
            FakeRoom(private=True, tokens={"old": time.time() - 60}),
            "old",
            DailyJoinFailure.TOKEN_EXPIRED,
        ),
        (
            FakeRoom(private=True, tokens={"t": time.time() + 600}),
            None,
            DailyJoinFailure.NOT_ALLOWED,
        ),
    ],
    ids=["no-room", "exp-token", "not-allowed"],
)
async def test_a_room_that_refuses_the_join_fails_at_once_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    room: FakeRoom,
    token: str | None,
    reason: DailyJoinFailure,
) -> None:
    url = room.url + "-gone" if reason is DailyJoinFailure.ROOM_NOT_FOUND else room.url
    with installed(monkeypatch, room):
        failure, took = await failed_join(RoomOptions(url, token, join_timeout_s=10), tmp_path)
    assert failure.reason is reason
    assert failure.side is Side.REMOTE and not failure.retryable
    assert took < 5  # Daily's answer, not the 10 s timeout
    assert room.joins == [url]


async def test_a_join_that_never_answers_fails_at_the_join_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    room = FakeRoom(join_delay_s=30)  # Daily's API never answers in time
    with installed(monkeypatch, room):
        failure, took = await failed_join(RoomOptions(room.url, join_timeout_s=1.5), tmp_path)
    assert failure.reason is DailyJoinFailure.TIMED_OUT and failure.retryable
    assert 1.5 <= took < 4.5


async def test_with_the_real_daily_python_an_unreachable_api_fails_within_the_join_timeout(
    tmp_path: Path,
) -> None:
    """daily-python itself, offline: its join would take 19 s to give up here."""
    pytest.importorskip("daily")
    url = "https://voxpipe-offline-test.daily.co/no-network"
    failure, took = await failed_join(RoomOptions(url, join_timeout_s=2), tmp_path)
    # Where DNS fails at once the SDK says so first; here it hangs until the timeout.
    assert failure.reason in (DailyJoinFailure.TIMED_OUT, DailyJoinFailure.UNREACHABLE)
    assert failure.retryable
    assert took < 5


def test_voxpipe_daily_exits_non_zero_naming_the_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    room = FakeRoom(private=True, tokens={"old": time.time() - 60})
    with installed(monkeypatch, room):
        started = time.monotonic()
        rc = main(["daily", room.url, "--token", "old", "--brain", "scripted"])
        took = time.monotonic() - started
    assert rc == 2 and took < 10
    assert "token has expired" in capsys.readouterr().err


def test_a_malformed_room_url_is_refused_before_anything_is_joined(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["daily", "daily.co/room", "--brain", "scripted"]) == 2
    assert "not a Daily room URL" in capsys.readouterr().err
    with pytest.raises(DailyJoinFailed) as failure:
        room_name("https://team.daily.co/")
    assert failure.value.reason is DailyJoinFailure.INVALID_URL and failure.value.side is Side.LOCAL


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("exp-token: the meeting token has expired", DailyJoinFailure.TOKEN_EXPIRED),
        ("no-room: the room does not exist", DailyJoinFailure.ROOM_NOT_FOUND),
        ("exp-room", DailyJoinFailure.ROOM_EXPIRED),
        ("meeting-full", DailyJoinFailure.ROOM_FULL),
        ("not-allowed", DailyJoinFailure.NOT_ALLOWED),
        # What daily-python 0.36.0 said here, offline, after 19 s:
        (
            "Connection(Api(RoomLookup(RoomInfoFetchFailed(Get(hyper_util::client::legacy::"
            'Error(Connect, Custom { kind: Uncategorized, error: "failed to lookup address '
            'information: Name or service not known" }))))))',
            DailyJoinFailure.UNREACHABLE,
        ),
        ("something new", DailyJoinFailure.REFUSED),
    ],
)
def test_daily_pythons_join_errors_are_named(said: str, reason: DailyJoinFailure) -> None:
    assert join_failed("https://t.daily.co/r", said).reason is reason
