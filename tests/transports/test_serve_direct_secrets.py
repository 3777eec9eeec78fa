"""Direct mode's page secrets: one kept ready, the next minted 30 s before expiry.

Real parts on loopback: ``voxpipe serve``'s direct routes and the embedded realtime server as
the provider (its ``/v1/realtime/client_secrets`` and secret store). Time is a clock the
provider and voxpipe share, moved on by the test instead of waiting.
"""

from __future__ import annotations

import time

import pytest
from direct_serve import page_secret, serving_direct

from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server

KEY = "sk-provider-key"
TTL_S = 60


class SharedClock:
    def __init__(self) -> None:
        self.ahead_s = 0.0
        self.start_s = time.time()

    def seconds(self) -> float:
        return self.start_s + self.ahead_s  # still, unless the test moves it on

    def ms(self) -> int:
        return int(self.seconds() * 1000)


@pytest.mark.timeout(60)
async def test_a_page_gets_the_ready_secret_then_a_fresh_one_30_s_before_expiry() -> None:
    clock = SharedClock()
    server = ServerConfig(api_key=KEY, clock=clock.seconds)
    async with (
        running_realtime_server(config=server) as srv,
        serving_direct(srv, api_key=KEY, secret_ttl_s=TTL_S, clock_ms=clock.ms) as serve,
    ):
        status, first = await page_secret(serve)
        assert status == 200 and first["value"].startswith("ek_")
        assert first["expires_at"] == int(clock.seconds()) + TTL_S
        clock.ahead_s = 29  # 31 s left: the same one, minted once
        assert (await page_secret(serve))[1]["value"] == first["value"]
        assert len(srv.server.secrets) == 1
        clock.ahead_s = 31  # 29 s left: never handed out again
        status, second = await page_secret(serve)
        assert status == 200 and second["value"] != first["value"]
        assert second["expires_at"] - clock.seconds() > 30
        # The provider takes the new one for a call, as it would the old until it lapses.
        now = clock.seconds()
        assert srv.server.secrets.lookup(second["value"], now) is not None
        assert srv.server.secrets.lookup(first["value"], now) is not None
        clock.ahead_s = TTL_S
        assert srv.server.secrets.lookup(first["value"], clock.seconds()) is None


@pytest.mark.timeout(60)
async def test_while_minting_fails_the_current_secret_goes_until_it_expires() -> None:
    clock = SharedClock()
    server = ServerConfig(api_key=KEY, clock=clock.seconds)
    async with (
        running_realtime_server(config=server) as srv,
        serving_direct(srv, api_key=KEY, secret_ttl_s=TTL_S, clock_ms=clock.ms) as serve,
    ):
        status, first = await page_secret(serve)
        assert status == 200
        full = srv.server.secrets.max_bytes
        srv.server.secrets.max_bytes = 0  # the provider refuses to mint (429): transient
        clock.ahead_s = 45  # the refresh is due, and fails
        status, body = await page_secret(serve)
        assert (status, body["value"]) == (200, first["value"])  # still 15 s to start a call
        clock.ahead_s = TTL_S + 1  # expired, and minting still fails
        status, body = await page_secret(serve)
        assert (status, body) == (502, {"error": "provider_unreachable"})
        srv.server.secrets.max_bytes = full  # the provider recovers
        status, body = await page_secret(serve)
        assert status == 200 and body["value"] != first["value"]
