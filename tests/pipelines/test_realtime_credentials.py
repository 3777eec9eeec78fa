"""Credential scope: OPENAI_API_KEY never reaches another endpoint, even one on this machine.

A real listener on a loopback port records every WebSocket handshake a
realtime call makes to it; the environment holds a key. Before this scope the
key was wrapped for whatever ``server_url`` was given and a listener captured it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from loopback import serving
from realtime_calls import compose

from voxpipe.errors import ConfigError
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.transports.file import FileTransport

ENV_KEY = "sk-env-secret-0123456789"


def _recording_listener(handshakes: list[dict[str, str]]) -> web.Application:
    async def realtime(request: web.Request) -> web.StreamResponse:
        handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()  # no session: the call reconnects, and shows its headers again
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", realtime)
    return app


async def _handshakes(recording: Path, **build: Any) -> list[dict[str, str]]:
    handshakes: list[dict[str, str]] = []
    async with serving(_recording_listener(handshakes)) as base:
        server_url = base.replace("http://", "ws://") + "/v1/realtime"
        graph = build_realtime_pipeline(FileTransport(recording), server_url=server_url, **build)
        async with CallSession(graph, end_timeout_secs=2), asyncio.timeout(20):
            while len(handshakes) < 2:  # noqa: ASYNC110 - the listener fills it
                await asyncio.sleep(0.05)
    return handshakes


async def test_the_environment_key_is_not_sent_to_another_endpoint(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Hello.", 500], recording)
    handshakes = await _handshakes(recording)
    for headers in handshakes:
        assert ENV_KEY not in str(headers)
        assert "Authorization" not in headers  # a keyless endpoint gets no bearer at all


async def test_a_key_given_for_the_endpoint_is_sent_to_it(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Hello.", 500], recording)
    handshakes = await _handshakes(recording, api_key="its-own-key")
    assert all(h.get("Authorization") == "Bearer its-own-key" for h in handshakes)


def test_a_key_is_refused_over_plain_ws_to_another_machine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="clear text"):
        build_realtime_pipeline(
            FileTransport(None), server_url="ws://192.0.2.10:8765/v1/realtime", api_key="k"
        )
