"""The realtime server's limits on what a client can make it hold (issue 19).

Each was a hole found by an audit: any web page could open sessions on a loopback
server from a visitor's browser; sessions, secrets and message sizes had no bound;
a half-open peer lived for the session cap; a key offered as a subprotocol went
to the log. Real server, real aiohttp clients on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from test_realtime_server_support import API_KEY, raw_client

from voxpipe.errors import ConfigError
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.realtime_server.app import MAX_MESSAGE_BYTES
from voxpipe.transports.realtime_server.secrets import MAX_SESSION_BYTES, SecretStore, StoreFull


@asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[RunningServer]:
    brain = ScriptedBrain(["Still here."], pace=0)
    server_config = ServerConfig(api_key=API_KEY, **config)
    async with running_realtime_server(config=server_config, brain=brain) as srv:
        yield srv


async def upgrade(
    srv: RunningServer, headers: dict[str, str] | None = None, **options: Any
) -> tuple[int, dict[str, Any] | None]:
    """The status of an upgrade (101 when it opened) and the refusal's body."""
    wanted = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(
                f"{srv.realtime_url}?model=gpt-realtime", headers=wanted, **options
            ) as ws:
                await ws.receive_json()  # session.created
                return 101, None
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status, None


async def refusal(srv: RunningServer, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A plain GET of the upgrade route: the status and the JSON error a refusal carries."""
    wanted = {
        "Authorization": f"Bearer {API_KEY}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **headers,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{srv.realtime_url}?model=gpt-realtime", headers=wanted) as response,
    ):
        return response.status, {**(await response.json()), "headers": dict(response.headers)}


@pytest.mark.parametrize(
    ("allowed", "origin", "opens"),
    [
        ((), None, True),  # not a browser: no Origin
        ((), "https://evil.example", False),
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "https://app.example.evil.example", False),
        (("*",), "https://anyone.example", True),
    ],
)
async def test_a_browser_opens_sessions_only_from_an_allowed_origin(
    allowed: tuple[str, ...], origin: str | None, opens: bool
) -> None:
    async with serving(allowed_origins=allowed) as srv:
        headers = {"Origin": origin} if origin else {}
        status, _ = await upgrade(srv, headers)
        assert status == (101 if opens else 403)
        if not opens:
            status, body = await refusal(srv, headers)
            assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
            assert not srv.server.live_sessions


async def test_past_the_session_limit_an_upgrade_is_a_503_and_a_slot_frees_on_close() -> None:
    async with serving(max_sessions=2) as srv:
        async with raw_client(srv), raw_client(srv):
            status, body = await refusal(srv, {})
            assert (status, body["error"]["code"]) == (503, "server_busy")
            assert body["headers"]["Retry-After"] == "1"
        async with asyncio.timeout(10):  # the two sessions' cleanup, waited for
            while srv.server.live_sessions:  # noqa: ASYNC110 - the server's own record
                await asyncio.sleep(0.02)
        assert (await upgrade(srv))[0] == 101


async def test_a_key_offered_as_a_subprotocol_never_reaches_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    key_protocol = f"openai-insecure-api-key.{API_KEY}"
    # A browser's form: the key as the only subprotocol, no Authorization header.
    async with (
        serving() as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{srv.realtime_url}?model=gpt-realtime", protocols=(key_protocol,)) as ws,
    ):
        assert (await ws.receive_json())["type"] == "session.created"
    assert API_KEY not in caplog.text


async def test_a_message_past_the_limit_closes_the_socket_with_1009() -> None:
    # The default limit (16 MiB) at a size a socket buffer holds whole, so the client
    # has written all of it before the server refuses it.
    async with serving(max_message_bytes=64 * 1024) as srv, raw_client(srv) as client:
        await client.ws.send_str('{"type": "response.create", "x": "' + "a" * 100_000 + '"}')
        closing = await client.ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert MAX_MESSAGE_BYTES == 16 * 1024 * 1024  # OpenAI's 15 MiB append fits; 32 MiB did


async def test_compression_is_never_negotiated() -> None:
    # permessage-deflate let 29 KiB on the wire inflate to 30 MiB before the size check.
    async with (
        serving() as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{srv.realtime_url}?model=gpt-realtime",
            headers={"Authorization": f"Bearer {API_KEY}"},
            compress=15,
        ) as ws,
    ):
        assert ws.compress == 0


async def test_a_half_open_peer_is_dropped_within_two_heartbeats() -> None:
    async with (
        serving(heartbeat_s=0.3) as srv,
        aiohttp.ClientSession() as http,
        # autoping off and never read: pings go unanswered, as from a peer that vanished.
        http.ws_connect(
            f"{srv.realtime_url}?model=gpt-realtime",
            headers={"Authorization": f"Bearer {API_KEY}"},
            autoping=False,
        ),
    ):
        async with asyncio.timeout(10):
            while not srv.server.live_sessions:  # noqa: ASYNC110 - the server's own record
                await asyncio.sleep(0.02)
            while srv.server.live_sessions:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "bad", [{"max_sessions": 0}, {"heartbeat_s": 0.0}, {"max_message_bytes": 10}]
)
def test_nonsense_limits_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig(**bad)


def test_the_secret_store_is_bounded_and_purges_expired_secrets() -> None:
    store = SecretStore(max_secrets=2, max_bytes=10_000)
    first = store.mint({"instructions": "a"}, 60, now_s=0)
    store.mint({"instructions": "b"}, 120, now_s=0)
    with pytest.raises(StoreFull):
        store.mint({"instructions": "c"}, 60, now_s=1)
    assert store.lookup(first.value, now_s=60) is None  # expired, and purged
    assert len(store) == 1
    store.mint({"instructions": "c"}, 60, now_s=61)  # the slot is free again
    with pytest.raises(StoreFull):
        store.mint({"instructions": "x" * 10_000}, 60, now_s=61)
    assert store.bytes_held < 100


async def test_a_mint_past_the_bounds_is_a_429_and_an_oversize_session_a_400() -> None:
    async with serving() as srv, aiohttp.ClientSession() as http:
        srv.server.secrets = SecretStore(max_secrets=1)
        url = srv.realtime_url.replace("ws://", "http://") + "/client_secrets"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(url, json={}, headers=auth) as minted:
            assert minted.status == 200
        async with http.post(url, json={}, headers=auth) as full:
            assert full.status == 429
            assert (await full.json())["error"]["code"] == "rate_limit_exceeded"
        huge = {"session": {"type": "realtime", "instructions": "x" * MAX_SESSION_BYTES}}
        async with http.post(url, json=huge, headers=auth) as oversize:
            assert oversize.status == 400
            assert (await oversize.json())["error"]["param"] == "session"


async def test_a_client_that_stops_reading_is_closed_not_queued_for() -> None:
    # A long answer in a synthetic voice, streamed as fast as it is made, to a client
    # that never reads: once the socket's buffers fill, the writer waits; past the
    # stall limit the session closes instead of queueing events without end.
    words = " ".join(["word"] * 3000) + "."
    brain = ScriptedBrain([words], pace=0)
    config = ServerConfig(api_key=API_KEY, write_stall_s=1.0)
    async with (
        running_realtime_server(config=config, brain=brain) as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{srv.realtime_url}?model=gpt-realtime",
            headers={"Authorization": f"Bearer {API_KEY}"},
            max_msg_size=0,
        ) as ws,
    ):
        await ws.send_json({"type": "response.create"})
        async with asyncio.timeout(60):
            while not srv.server.live_sessions:  # noqa: ASYNC110 - the server's own record
                await asyncio.sleep(0.02)
            while srv.server.live_sessions:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # Dropped: what the client finally reads ends without a normal close.
        async with asyncio.timeout(30):
            async for message in ws:
                assert message.type is aiohttp.WSMsgType.TEXT
        assert ws.close_code != 1000
