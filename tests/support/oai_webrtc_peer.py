"""A browser stand-in for OpenAI's WebRTC call API: an aiortc peer with an ``oai-events`` channel.

It does what OpenAI's WebRTC guide has a page do: an audio transceiver with
the microphone, a data channel named ``oai-events``, the SDP offer POSTed to
``/v1/realtime/calls`` with ``Authorization: Bearer <ephemeral secret>``, and
the call id read from the answer's ``Location``. It keeps every event the
data channel brings and the audio it hears (with :mod:`webrtc_peer`'s
microphone and recorder). No tests here.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from webrtc_peer import EchoLine, HeardAudio, Microphone, _record


@dataclass
class OaiPeer:
    """A connected call: its peer connection, channel, call id, events and what it heard."""

    pc: RTCPeerConnection
    channel: Any
    call_id: str
    location: str
    mic: Microphone
    heard: HeardAudio
    events: list[dict[str, Any]] = field(default_factory=list)
    event_arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """Each event with when it arrived (monotonic ms)."""
    channel_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The events of one type, in order."""
        return [e for e in self.events if e.get("type") == kind]

    def arrived_since(self, kind: str, since_ms: float) -> list[dict[str, Any]]:
        """Events of one type that arrived at or after ``since_ms`` (monotonic ms)."""
        return [e for t, e in self.event_arrivals if t >= since_ms and e.get("type") == kind]

    def loud_ms_since(self, since_ms: float, threshold: float = 0.02) -> float:
        """Milliseconds of loud bot audio among the 20 ms frames that arrived since ``since_ms``."""
        arrivals = list(self.heard.arrivals_ms)
        first = bisect.bisect_left(arrivals, since_ms)
        samples = self.heard.samples()[first * 960 : len(arrivals) * 960]
        frames = samples[: samples.size // 960 * 960].astype(np.float32).reshape(-1, 960) / 32768
        return float((np.sqrt((frames**2).mean(axis=1)) > threshold).sum() * 20)

    def send(self, event: dict[str, Any]) -> None:
        """A client event over the data channel."""
        self.channel.send(json.dumps(event))


async def until(check: Callable[[], object], limit_s: float = 60.0, what: str = "") -> None:
    """Wait for ``check()`` to hold, polling every 20 ms; fails after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what or check}")
        await asyncio.sleep(0.02)


async def post_offer(
    http_base_url: str, secret: str, sdp: str, *, session: dict[str, Any] | None = None
) -> tuple[int, str, dict[str, str]]:
    """POST an offer as the browser guide does (or as the SDK's multipart form with a session)."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession() as http:
        if session is None:
            headers["Content-Type"] = "application/sdp"
            request = http.post(f"{http_base_url}/realtime/calls", data=sdp, headers=headers)
        else:
            form = aiohttp.FormData()
            form.add_field("sdp", sdp, content_type="application/sdp")
            form.add_field("session", json.dumps(session), content_type="application/json")
            request = http.post(f"{http_base_url}/realtime/calls", data=form, headers=headers)
        async with request as resp:
            return resp.status, await resp.text(), dict(resp.headers)


@contextlib.asynccontextmanager
async def oai_call(
    http_base_url: str, secret: str, *, session: dict[str, Any] | None = None
) -> AsyncIterator[OaiPeer]:
    """Start a WebRTC call on ``http_base_url`` (``http://host:port/v1``) with ``secret``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = Microphone(EchoLine(-math.inf, 40))  # a headset: says what it is told, else silence
    pc.addTransceiver(mic, direction="sendrecv")
    channel = pc.createDataChannel("oai-events")
    heard = HeardAudio()
    tasks: list[asyncio.Task[Any]] = []

    @pc.on("track")
    def _on_track(track: Any) -> None:
        tasks.append(asyncio.create_task(_record(track, heard, None)))

    await pc.setLocalDescription(await pc.createOffer())
    status, body, headers = await post_offer(
        http_base_url, secret, pc.localDescription.sdp, session=session
    )
    assert status == 201, (status, body)
    location = headers["Location"]
    peer = OaiPeer(pc, channel, location.rsplit("/", 1)[-1], location, mic, heard)

    @channel.on("message")
    def _on_message(message: Any) -> None:
        if isinstance(message, str):
            event = json.loads(message)
            peer.events.append(event)
            peer.event_arrivals.append((time.monotonic() * 1000, event))

    @channel.on("close")
    def _on_close() -> None:
        peer.channel_closed.set()

    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    try:
        await until(lambda: pc.connectionState == "connected", 30, "the peer connection")
        yield peer
    finally:
        for task in tasks:
            task.cancel()
        mic.stop()
        await pc.close()
