"""A recording peer between a realtime client and voxpipe's server (no tests here).

Every text message is relayed unchanged, both ways, over real loopback
sockets, and kept in order with its direction, so a test can read the exact
sequence of client events on the wire (what the client sent between a
server's ``response.function_call_arguments.done`` and its next event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from loopback import serving


@dataclass(frozen=True)
class Relayed:
    """One message: ``from_client`` or from the server; its event type and body."""

    from_client: bool
    type: str
    body: dict[str, Any]


class RecordingProxy:
    """Relays one or more sessions to ``upstream`` and records every text message."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.messages: list[Relayed] = []
        self.url = ""

    def client_events(self, event_type: str | None = None) -> list[Relayed]:
        return [m for m in self.messages if m.from_client and event_type in (None, m.type)]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._session)
        return app

    async def _session(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        upstream = (
            f"{self.upstream}?{request.query_string}" if request.query_string else self.upstream
        )
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(upstream, headers=headers, max_msg_size=0) as server,
        ):
            tasks = [
                asyncio.create_task(self._relay(client, server, from_client=True)),
                asyncio.create_task(self._relay(server, client, from_client=False)),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await server.close()
        await client.close()
        return client

    async def _relay(self, source: Any, sink: Any, *, from_client: bool) -> None:
        async for message in source:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            body = json.loads(message.data)
            kind = str(body.get("type"))
            if kind != "input_audio_buffer.append":  # the caller's audio: relayed, not kept
                if "delta" in body and kind == "response.output_audio.delta":
                    body = {k: v for k, v in body.items() if k != "delta"}
                self.messages.append(Relayed(from_client, kind, body))
            with contextlib.suppress(ConnectionError):
                await sink.send_str(message.data)


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[RecordingProxy]:
    """A proxy on a free loopback port; ``proxy.url`` is its realtime URL."""
    proxy = RecordingProxy(upstream)
    async with serving(proxy.app()) as base:
        proxy.url = base.replace("http://", "ws://") + "/v1/realtime"
        yield proxy
