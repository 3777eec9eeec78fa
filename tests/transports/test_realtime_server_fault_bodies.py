"""The fault-control endpoint answers a body it cannot use with a 400, never a 500
(issue 19: a non-object body was an HTTP 500 with a traceback). Real server, loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from test_realtime_server_support import API_KEY, raw_client

from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = ServerConfig(api_key=API_KEY, fault_injection=True)
    async with running_realtime_server(config=config, brain=ScriptedBrain(["Fine."])) as srv:
        yield srv


@pytest.mark.parametrize(
    "body",
    ["[]", '"stall"', "1", "null", "not json", '{"kind": "no_such_fault"}', '{"kind": []}'],
)
async def test_a_fault_body_that_is_not_a_fault_is_a_400_and_arms_nothing(
    server: RunningServer, body: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.http_base_url}/_voxpipe/faults",
            data=body,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
    assert error["code"] in ("invalid_json", "invalid_value") and error["message"]
    # Nothing armed, the server serves: a session opens and is answered.
    async with raw_client(server) as client:
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        done = await client.until("response.done", wait_s=30)
        assert done["response"]["status"] == "completed"
