"""Daily's REST API (rooms and meeting tokens) against a fake built to its documentation.

The fake (an aiohttp app on loopback) answers ``POST /rooms`` and
``POST /meeting-tokens`` as Daily's reference describes: a Bearer key or 401,
a room object with ``name`` and ``url``, ``{"token": ...}``. ``voxpipe daily
--create-room`` is run against it and a daily-python stand-in whose room
accepts only the tokens the fake minted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from fake_daily import FakeRoom, installed
from loopback import serving

from voxpipe.cli import main
from voxpipe.errors import ConfigError, DailyApiError
from voxpipe.transports.daily.rest import DailyRest

KEY = "test-daily-key"


@dataclass
class FakeDailyApi:
    """Rooms and meeting tokens as Daily's REST API hands them out."""

    room: FakeRoom | None = None  # the room a create hands out (a stand-in the agent joins)
    fail_with: int | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/rooms", self._rooms)
        app.router.add_post("/v1/meeting-tokens", self._tokens)
        return app

    async def _authorized(self, request: web.Request) -> dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            raise web.HTTPUnauthorized(text='{"error":"authentication-error"}')
        if self.fail_with is not None:
            raise web.HTTPInternalServerError(text='{"error":"server-error"}')
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body))
        return body

    async def _rooms(self, request: web.Request) -> web.Response:
        body = await self._authorized(request)
        name = f"room-{uuid.uuid4().hex[:6]}"
        url = self.room.url if self.room else f"https://voxpipe-test.daily.co/{name}"
        if self.room is not None:
            name = url.rsplit("/", 1)[1]
        return web.json_response(
            {"id": uuid.uuid4().hex, "name": name, "url": url, "privacy": body.get("privacy")}
        )

    async def _tokens(self, request: web.Request) -> web.Response:
        body = await self._authorized(request)
        token = f"tok-{uuid.uuid4().hex[:8]}"
        if self.room is not None:
            self.room.tokens[token] = float(body["properties"]["exp"])
        return web.json_response({"token": token})


async def test_a_room_is_created_private_and_short_lived_with_a_token_each() -> None:
    api = FakeDailyApi()
    async with serving(api.app()) as base:
        rest = DailyRest(KEY, f"{base}/v1", now_s=lambda: 1_000_000.0)
        room = await rest.create_room(minutes=10, bot_name="voxpipe")
    (_, created), (_, agent), (_, guest) = api.requests
    assert created == {
        "privacy": "private",
        "properties": {"exp": 1_000_600, "eject_at_room_exp": True},
    }
    assert agent["properties"] == {
        "room_name": room.name,
        "exp": 1_000_600,
        "is_owner": True,
        "user_name": "voxpipe",
    }
    assert guest["properties"] == {"room_name": room.name, "exp": 1_000_600, "is_owner": False}
    assert room.join_link == f"{room.url}?t={room.guest_token}"
    assert room.agent_token != room.guest_token


async def test_a_refused_key_a_server_error_and_no_answer_are_named() -> None:
    api = FakeDailyApi()
    async with serving(api.app()) as base:
        with pytest.raises(DailyApiError) as refused:
            await DailyRest("wrong-key", f"{base}/v1").create_room(minutes=5, bot_name="v")
        api.fail_with = 500
        with pytest.raises(DailyApiError) as failed:
            await DailyRest(KEY, f"{base}/v1").create_room(minutes=5, bot_name="v")
    assert refused.value.status == 401 and not refused.value.retryable
    assert "authentication-error" in str(refused.value)
    assert failed.value.status == 500 and failed.value.retryable
    started = time.monotonic()
    with pytest.raises(DailyApiError) as unreachable:  # the server above is gone
        await DailyRest(KEY, f"{base}/v1").create_room(minutes=5, bot_name="v")
    assert unreachable.value.status is None and unreachable.value.retryable
    assert time.monotonic() - started < 5
    with pytest.raises(ConfigError):
        DailyRest("", f"{base}/v1")


async def test_voxpipe_daily_create_room_prints_the_join_link_and_joins_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    room = FakeRoom(url="https://voxpipe-test.daily.co/made-for-you", private=True)
    api = FakeDailyApi(room=room)
    monkeypatch.setenv("DAILY_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with serving(api.app()) as base:
        with installed(monkeypatch, room):
            argv = ["daily", "--create-room", "--api-url", f"{base}/v1", "--brain", "scripted"]
            rc = await asyncio.to_thread(main, [*argv, "--max-secs", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    tokens = list(room.tokens)
    assert f"join: {room.url}?t={tokens[1]}" in out  # the guest's link
    assert room.agent_left and "ended: max_duration" in out  # it joined with its own token


def test_create_room_needs_a_key_and_excludes_a_room_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAILY_API_KEY", raising=False)
    assert main(["daily", "--create-room", "--brain", "scripted"]) == 2
    assert "DAILY_API_KEY" in capsys.readouterr().err
    assert main(["daily", "https://t.daily.co/r", "--create-room"]) == 2
    assert main(["daily"]) == 2
