"""voxpipe's realtime server in a process of its own, for faults only a process can have.

A parent can SIGKILL it (the socket dies with no close frame; nothing is said),
start another in its place on the same port (a supervisor's restart: the new
process has imported everything before the old one dies, so "restarted N ms
after the kill" is the test's choice, not the machine's import time), and
SIGSTOP it (a server that never answers: the kernel still accepts connections
into the listen backlog, but no byte, handshake or event ever comes back).

The child: ``python server_process.py PORT KEY REPLIES_JSON`` imports, prints
``ready``, waits for ``listen`` on stdin, serves, prints ``listening``, and
serves until stdin closes. Scripted brain at real time (pace 1), synthetic voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One child server process (spawned waiting; told to listen)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.frozen = False

    @classmethod
    async def spawn(cls, port: int, key: str, replies: list[Any]) -> ServerProcess:
        """A child that has imported everything and waits to be told to listen."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            str(port),
            key,
            json.dumps(replies),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "LOGURU_LEVEL": "WARNING"},
        )
        child = cls(proc, port)
        await child._expect("ready", 120)
        return child

    async def listen(self) -> None:
        """Bind and serve; returns once the port accepts connections."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"listen\n")
        await self.proc.stdin.drain()
        await self._expect("listening", 60)

    async def _expect(self, word: str, timeout_s: float) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if line.decode().strip() != word:
            raise RuntimeError(f"server process said {line!r}, not {word!r}")

    def kill(self) -> None:
        """SIGKILL: no close frame, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel and never answered."""
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    async def close(self) -> None:
        """End the child, whatever state it is in."""
        if self.proc.returncode is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


async def _child(port: int, key: str, replies: list[Any]) -> None:
    from voxpipe.transports.realtime_server import (
        ScriptedBrain,
        ServerConfig,
        running_realtime_server,
    )

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    if (await reader.readline()).decode().strip() != "listen":
        return
    brain = ScriptedBrain(replies, pace=1.0)
    config = ServerConfig(api_key=key)
    async with running_realtime_server(config=config, brain=brain, port=port):
        print("listening", flush=True)
        while await reader.readline():
            pass


if __name__ == "__main__":
    asyncio.run(_child(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])))
