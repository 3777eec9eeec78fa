"""The realtime client never asks for permessage-deflate (issue 19).

Nearly everything a call sends is base64 audio; compressing it cost 7-15% of a
call process's CPU (issue 19's profile) to shrink it to about 70% (base64's six
bits a character; the audio itself hardly compresses): CPU is what a process
running many calls runs out of, not loopback or LAN bandwidth. A real aiohttp
server that would accept compression (as a provider's may) sees no offer, and the
socket is uncompressed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiohttp import web

from voxpipe.processors.realtime.socket import close_quietly, open_socket


@pytest.fixture
async def deflating_server() -> AsyncIterator[tuple[str, list[str]]]:
    offered: list[str] = []

    async def route(request: web.Request) -> web.WebSocketResponse:
        offered.append(request.headers.get("Sec-WebSocket-Extensions", ""))
        ws = web.WebSocketResponse(compress=True)  # accepts deflate when offered
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/v1/realtime", offered
    finally:
        await runner.cleanup()


async def test_the_client_offers_no_compression_and_sends_audio_as_is(
    deflating_server: tuple[str, list[str]],
) -> None:
    url, offered = deflating_server
    ws = await open_socket(url, {})
    assert not isinstance(ws, Exception) and hasattr(ws, "send"), ws
    try:
        assert offered == [""]  # before: "permessage-deflate; client_max_window_bits"
        assert ws.protocol.extensions == []
        pcm = np.random.default_rng(0).normal(0, 300, 2400).astype("<i2").tobytes()
        event = json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
        )
        await ws.send(event)
        assert await ws.recv() == event
    finally:
        await close_quietly(ws)
