"""``voxpipe realtime-server`` as a user starts it: a subprocess on a free port."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

SCRIPT = ["First scripted answer.", {"function_call": {"name": "lookup", "arguments": {"q": 1}}}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[int]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxpipe",
            "realtime-server",
            "--brain",
            "scripted",
            "--script",
            str(script),
            "--voice",
            "synthetic",
            "--port",
            str(port),
            "--api-key",
            "cli-key",
            "--session-max-seconds",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        assert f"ws://127.0.0.1:{port}/v1/realtime" in banner
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_cli_refuses_a_wrong_key(cli_server: int) -> None:
    url = f"ws://127.0.0.1:{cli_server}/v1/realtime?model=gpt-realtime"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Authorization": "Bearer wrong"})
    assert refused.value.status == 401


async def test_cli_answers_with_the_script(cli_server: int) -> None:
    url = f"ws://127.0.0.1:{cli_server}/v1/realtime?model=gpt-realtime"
    outputs = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": "Bearer cli-key"}) as ws,
    ):
        for _ in range(2):
            await ws.send_json(
                {"type": "response.create", "response": {"output_modalities": ["text"]}}
            )
            while True:
                event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                if event["type"] == "response.done":
                    outputs.append(event["response"]["output"][0])
                    break
    assert outputs[0]["content"][0]["text"].strip() == "First scripted answer."
    assert (outputs[1]["type"], outputs[1]["name"]) == ("function_call", "lookup")
    assert json.loads(outputs[1]["arguments"]) == {"q": 1}


def test_cli_refuses_script_without_scripted_brain(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxpipe",
            "realtime-server",
            "--brain",
            "local",
            "--script",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--script only applies to --brain scripted" in done.stderr


def test_cli_refuses_to_serve_the_network_without_a_key() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxpipe",
            "realtime-server",
            "--brain",
            "scripted",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "without --api-key" in done.stderr
