"""``voxpipe serve --direct`` in front of the embedded Realtime server as the provider.

The direct mode's tests and ``benchmarks/webrtc.py`` set up the same thing: the
in-process server stands in for OpenAI (it mints the page's secrets and takes
its WebRTC call), and voxpipe serves the page and joins each call on the
sideband. :func:`serving_direct` is that set-up; :func:`page_secret` is what
the page asks voxpipe for before it calls the provider, and :func:`page_call`
the whole of what the page does to start a call (an aiortc peer for a browser).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from oai_webrtc_peer import OaiPeer, oai_call

from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.transports.realtime_server import RunningServer
from voxpipe.transports.webrtc.app import RunningServe, ServeConfig, running_serve
from voxpipe.transports.webrtc.direct import DirectConfig


@asynccontextmanager
async def serving_direct(
    srv: RunningServer, *, api_key: str, page_origin_allowed: bool = False, **direct: Any
) -> AsyncIterator[RunningServe]:
    """Serve the direct mode with ``srv`` as its provider; ``direct``: more of DirectConfig.

    ``page_origin_allowed``: the provider lets the served page's origin call it
    (CORS), as OpenAI lets any: a browser's page needs it, an aiortc peer does not.
    """
    config = DirectConfig(
        provider_http=srv.http_base_url, provider_ws=srv.ws_base_url, api_key=api_key, **direct
    )
    async with running_serve(ServeConfig(call=LiveCallSpec(), direct=config)) as serve:
        if page_origin_allowed:
            srv.server.config = dataclasses.replace(srv.server.config, allowed_origins=(serve.url,))
        yield serve


async def page_secret(serve: RunningServe) -> tuple[int, dict[str, Any]]:
    """What the page gets from ``POST /api/direct/secret``: the status and the JSON body."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{serve.url}/api/direct/secret") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return resp.status, body


@asynccontextmanager
async def page_call(serve: RunningServe) -> AsyncIterator[tuple[OaiPeer, dict[str, Any]]]:
    """What the page does: a secret from voxpipe, the call to the provider, its id to voxpipe."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{serve.url}/api/direct/secret") as resp:
            assert resp.status == 200, await resp.text()
            secret = await resp.json()
        provider = secret["calls_url"].removesuffix("/realtime/calls")
        async with oai_call(provider, secret["value"]) as peer:
            body = {"call_id": peer.call_id}
            async with http.post(f"{serve.url}/api/direct/calls", json=body) as resp:
                assert resp.status == 200, await resp.text()
            yield peer, secret
