"""Token providers against a real client_secrets endpoint on a loopback port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loopback import serving

from voxpipe.call.tokens import RotationConfig, RotationFailed, SecretRotated, TokenMode
from voxpipe.errors import ConfigError, FatalProviderError, TokenRotationError
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.tokens import EphemeralTokenProvider, RotationEvent, StaticKeyProvider

API_KEY = "sk-test-long-lived"
# Refresh 200 ms after minting a 10 s secret, so a test sees rotations quickly.
FAST = RotationConfig(refresh_before_ms=9_800, min_life_fraction=0.0, retry_initial_ms=50)


@dataclass
class MintServer:
    """A minimal /v1/realtime/client_secrets with fault injection."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    faults: list[tuple[int, str | None]] = field(default_factory=list)  # (status, code)
    minted: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.auth_headers.append(request.headers.get("Authorization", ""))
        self.requests.append(await request.json())
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "invalid_api_key")
        if self.faults:
            status, code = self.faults.pop(0)
            return _error(status, code)
        self.minted += 1
        seconds = self.requests[-1]["expires_after"]["seconds"]
        return web.json_response(
            {
                "value": f"ek_{self.minted}",
                "expires_at": time.time() + seconds,
                "session": self.requests[-1]["session"],
            }
        )


def _error(status: int, code: str | None) -> web.Response:
    body = {"error": {"type": "invalid_request_error", "code": code, "message": "injected"}}
    return web.json_response(body, status=status)


@pytest.fixture
async def server() -> AsyncIterator[MintServer]:
    state = MintServer()
    app = web.Application()
    app.router.add_post("/v1/realtime/client_secrets", state.handle)
    async with serving(app) as base:
        state.url = f"{base}/v1/realtime/client_secrets"
        yield state


class Recorder:
    def __init__(self) -> None:
        self.events: list[RotationEvent] = []
        self.changed = asyncio.Event()

    def __call__(self, event: RotationEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, count: int, kind: type[RotationEvent]) -> None:
        async with asyncio.timeout(5):
            while sum(isinstance(e, kind) for e in self.events) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_static_key_provider() -> None:
    provider = StaticKeyProvider(API_KEY)
    secret = await provider.secret()
    assert provider.mode is TokenMode.STATIC
    assert secret.value == API_KEY and secret.expires_at_ms is None
    assert await provider.refresh() == secret
    assert API_KEY not in repr(provider)
    await provider.aclose()


async def test_mints_an_ephemeral_secret_with_the_key_only_in_the_header(
    server: MintServer,
) -> None:
    provider = EphemeralTokenProvider(
        server.url, API_KEY, ttl_s=120, session_config={"model": "gpt-realtime"}
    )
    try:
        await provider.start()
        secret = await provider.secret()
    finally:
        await provider.aclose()
    assert secret.value == "ek_1" and secret.value != API_KEY
    assert server.requests == [
        {
            "expires_after": {"anchor": "created_at", "seconds": 120},
            "session": {"type": "realtime", "model": "gpt-realtime"},
        }
    ]
    assert server.auth_headers == [f"Bearer {API_KEY}"]
    assert secret.expires_at_ms is not None
    assert abs(secret.expires_at_ms - (time.time() + 120) * 1000) < 5_000
    assert API_KEY not in repr(provider) and API_KEY not in repr(secret)


async def test_refreshes_in_the_background_before_expiry(server: MintServer) -> None:
    events = Recorder()
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=10, rotation=FAST, on_event=events)
    try:
        await provider.start()
        first = await provider.secret()
        await events.wait_for(3, SecretRotated)
        # The caller gets the newest secret without waiting for a mint.
        latest = await provider.secret()
    finally:
        await provider.aclose()
    assert (first.value, latest.value) != ("ek_1", "ek_1")
    assert latest.value == f"ek_{server.minted}"
    assert provider.policy.rotations >= 3 and provider.policy.failures == 0


async def test_failed_rotations_are_retried_and_counted(server: MintServer) -> None:
    events = Recorder()
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=10, rotation=FAST, on_event=events)
    try:
        await provider.start()
        server.faults += [(503, None), (500, "server_error")]
        await events.wait_for(2, SecretRotated)
    finally:
        await provider.aclose()
    failures = [e for e in events.events if isinstance(e, RotationFailed)]
    assert [f.attempt for f in failures] == [1, 2]
    assert "HTTP 503" in failures[0].reason
    assert provider.policy.failures == 2 and provider.policy.consecutive_failures == 0
    assert provider.policy.secret is not None and provider.policy.secret.value == "ek_2"


async def test_first_mint_failure_does_not_block_start(server: MintServer) -> None:
    server.faults.append((502, None))
    events = Recorder()
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=60, rotation=FAST, on_event=events)
    try:
        await provider.start()
        assert provider.policy.failures == 1
        await events.wait_for(1, SecretRotated)
        assert (await provider.secret()).value == "ek_1"
    finally:
        await provider.aclose()


async def test_secret_mints_on_demand_without_start(server: MintServer) -> None:
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=60)
    try:
        secrets = await asyncio.gather(*(provider.secret() for _ in range(5)))
    finally:
        await provider.aclose()
    # Concurrent callers share one mint.
    assert {s.value for s in secrets} == {"ek_1"} and server.minted == 1


async def test_refresh_forces_a_new_secret(server: MintServer) -> None:
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=600)
    try:
        await provider.start()
        renewed = await provider.refresh()
        assert renewed.value == "ek_2" and (await provider.secret()).value == "ek_2"
    finally:
        await provider.aclose()


async def test_refused_key_is_fatal(server: MintServer) -> None:
    provider = EphemeralTokenProvider(server.url, "sk-wrong", ttl_s=60)
    try:
        with pytest.raises(FatalProviderError) as info:
            await provider.start()
        assert info.value.code == "invalid_api_key" and not info.value.retryable
        with pytest.raises(FatalProviderError):
            await provider.secret()
    finally:
        await provider.aclose()
    assert len(server.requests) == 1  # no retry loop on a refused key


async def test_quota_exhausted_in_the_background_stops_rotation(server: MintServer) -> None:
    events = Recorder()
    provider = EphemeralTokenProvider(server.url, API_KEY, ttl_s=10, rotation=FAST, on_event=events)
    try:
        await provider.start()
        server.faults.append((429, "insufficient_quota"))
        await events.wait_for(1, RotationFailed)
        with pytest.raises(FatalProviderError) as info:
            await provider.secret()
        assert info.value.code == "insufficient_quota"
    finally:
        await provider.aclose()


async def test_unreachable_server_is_a_counted_transient_failure() -> None:
    provider = EphemeralTokenProvider("http://127.0.0.1:9/v1/realtime/client_secrets", API_KEY)
    try:
        with pytest.raises(TokenRotationError):
            await provider.secret()
        assert provider.policy.failures == 1
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("url", "ttl_s", "key"),
    [
        ("http://api.example.com/v1/realtime/client_secrets", 60, API_KEY),  # key in clear text
        ("ftp://127.0.0.1/v1/realtime/client_secrets", 60, API_KEY),
        ("http://127.0.0.1:1/v1/realtime/client_secrets", 5, API_KEY),
        ("http://127.0.0.1:1/v1/realtime/client_secrets", 7201, API_KEY),
        ("https://api.example.com/v1/realtime/client_secrets", 60, ""),
    ],
)
def test_bad_configuration(url: str, ttl_s: int, key: str) -> None:
    with pytest.raises(ConfigError):
        EphemeralTokenProvider(url, key, ttl_s=ttl_s)


def test_https_and_loopback_urls_are_accepted() -> None:
    for url in ("https://api.example.com/x", "http://localhost:8765/x", "http://[::1]:8765/x"):
        EphemeralTokenProvider(url, API_KEY)


class ManualClock:
    """One wall clock shared by the server (seconds) and the provider (ms)."""

    def __init__(self) -> None:
        self.now_s = time.time()

    def seconds(self) -> float:
        return self.now_s

    def ms(self) -> int:
        return int(self.now_s * 1000)


async def _connect_status(realtime_url: str, secret_value: str) -> int | str:
    """101 -> the first server event's type; otherwise the HTTP status."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(
                f"{realtime_url}?model=gpt-realtime",
                headers={"Authorization": f"Bearer {secret_value}"},
            ) as ws:
                first = await ws.receive_json(timeout=5)
                return str(first["type"])
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_against_voxpipe_realtime_server_expired_secret_is_replaced() -> None:
    clock = ManualClock()
    config = ServerConfig(api_key=API_KEY, clock=clock.seconds)
    async with running_realtime_server(config=config) as srv:
        provider = EphemeralTokenProvider(
            f"{srv.http_base_url}/realtime/client_secrets", API_KEY, ttl_s=60, clock_ms=clock.ms
        )
        try:
            await provider.start()
            first = await provider.secret()
            assert first.value.startswith("ek_")
            assert await _connect_status(srv.realtime_url, first.value) == "session.created"
            clock.now_s += 61
            assert await _connect_status(srv.realtime_url, first.value) == 401
            # A reconnect after expiry gets a fresh secret, not the dead one.
            second = await provider.secret()
            assert second.value != first.value
            assert await _connect_status(srv.realtime_url, second.value) == "session.created"
        finally:
            await provider.aclose()
    assert provider.policy.rotations == 2


async def test_against_voxpipe_realtime_server_wrong_key_is_fatal() -> None:
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY)) as srv:
        provider = EphemeralTokenProvider(
            f"{srv.http_base_url}/realtime/client_secrets", "sk-not-the-key", ttl_s=60
        )
        try:
            with pytest.raises(FatalProviderError) as info:
                await provider.start()
        finally:
            await provider.aclose()
    assert info.value.code == "invalid_api_key"
