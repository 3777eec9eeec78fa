"""A health probe's socket: open, wait for ``session.created``, close, sending nothing.

Thin I/O around :class:`~voxpipe.call.probe.HealthProbe`, which decides what
the probe's outcome is. The socket is only ever read: no client event goes
out on it, so a probe carries none of the caller's audio or words.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection

from voxpipe.call.probe import HealthProbe, ProbeCommand, ProbeFinished
from voxpipe.call.recovery import SocketClosed
from voxpipe.processors.realtime.socket import close_quietly, open_socket


async def run_probe(
    probe: HealthProbe,
    url: str,
    headers: Callable[[], Awaitable[dict[str, str]]],
    now_ms: Callable[[], int],
) -> ProbeFinished:
    """Run ``probe`` against ``url`` (with ``headers()``, the call's own secret) to its verdict."""
    probe.start(now_ms())
    ws = None
    try:
        async with asyncio.timeout(probe.timeout_ms / 1000):
            opened = await open_socket(url, await headers())
            if not isinstance(opened, ClientConnection):
                return _verdict(probe.failed(opened, now_ms()))
            ws = opened
            async for message in ws:
                event_type, code = _type_and_code(message)
                found = probe.server_event(event_type, code, now_ms())
                if found:
                    return _verdict(found)
            closed = SocketClosed(ws.close_code or 1006, ws.close_reason or "")
            return _verdict(probe.failed(closed, now_ms()))
    except TimeoutError:
        # The deadline passed (a millisecond clock may read a hair short of it).
        return _verdict(probe.tick(now_ms()) or probe.tick(now_ms() + probe.timeout_ms))
    finally:
        if ws is not None:
            await close_quietly(ws)


def _verdict(commands: list[ProbeCommand]) -> ProbeFinished:
    # CloseProbeSession is carried out by run_probe's finally: the socket closes either way.
    [finished] = [c for c in commands if isinstance(c, ProbeFinished)]
    return finished


def _type_and_code(message: str | bytes) -> tuple[str, str | None]:
    """The event's type and error code; a message that is no event counts as neither."""
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return "", None
    if not isinstance(data, dict):
        return "", None
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return str(data.get("type") or ""), code if isinstance(code, str) else None
