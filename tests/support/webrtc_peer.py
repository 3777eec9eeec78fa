"""A WebRTC caller without a browser: an aiortc peer that speaks a recording and records the bot.

It does what the page does (audio transceiver first, a "voxpipe" data channel
with pings every 500 ms, the offer POSTed to ``/api/offer``) and keeps every
bot audio frame it receives with its arrival time, so a test can transcribe
what the caller heard and know when. No tests here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError


@dataclass
class HeardAudio:
    """The bot's audio as the caller received it: 48 kHz mono int16, and when each frame came."""

    pcm: bytearray = field(default_factory=bytearray)
    arrivals_ms: list[float] = field(default_factory=list)

    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.pcm), dtype="<i2")

    def loud_ms(self, threshold: float = 0.02) -> float:
        """Milliseconds of audio above ``threshold`` (full scale 1.0): how much the bot said."""
        x = self.samples().astype(np.float32) / 32768
        blocks = x[: x.size // 960 * 960].reshape(-1, 960)
        return float((np.sqrt((blocks**2).mean(axis=1)) > threshold).sum() * 20)


@dataclass
class Caller:
    """A connected peer: its connection, answer and what it heard."""

    pc: RTCPeerConnection
    answer: dict[str, Any]
    heard: HeardAudio
    player: MediaPlayer
    pinger: asyncio.Task[None] | None
    connected_ms: float | None = None
    messages: list[Any] = field(default_factory=list)

    def vanish(self) -> None:
        """Go silent as a killed tab does: no more media, no pings, and no goodbye."""
        if self.pinger is not None:
            self.pinger.cancel()
        if self.player.audio is not None:
            self.player.audio.stop()


async def offer(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST an offer body; the status and the JSON answer (or error)."""
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/offer", json=body) as resp:
        return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def calling(
    url: str, recording: Path, *, token: str | None = None, ping: bool = True
) -> AsyncIterator[Caller]:
    """Call ``url`` (a ``voxpipe serve``) with ``recording`` as the microphone."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: loopback only
    player = MediaPlayer(str(recording))
    pc.addTransceiver(player.audio, direction="sendrecv")  # the audio transceiver first
    channel = pc.createDataChannel("voxpipe")
    heard = HeardAudio()
    tasks: list[asyncio.Task[Any]] = []

    @pc.on("track")
    def _on_track(track: Any) -> None:
        tasks.append(asyncio.create_task(_record(track, heard)))

    async def _pinger() -> None:
        while True:
            if channel.readyState == "open":
                channel.send("ping")
            await asyncio.sleep(0.5)

    pinger = asyncio.create_task(_pinger()) if ping else None
    if pinger is not None:
        tasks.append(pinger)
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
    if token is not None:
        body["token"] = token
    status, answer = await offer(url, body)
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    caller = Caller(pc, answer, heard, player, pinger)

    @channel.on("message")
    def _on_message(message: Any) -> None:
        caller.messages.append(message)

    started = time.monotonic()
    async with asyncio.timeout(15):
        while pc.connectionState != "connected":  # noqa: ASYNC110 - aiortc's state
            await asyncio.sleep(0.01)
    caller.connected_ms = (time.monotonic() - started) * 1000
    try:
        yield caller
    finally:
        for task in tasks:
            task.cancel()
        if player.audio is not None:
            player.audio.stop()
        await pc.close()


async def _record(track: Any, heard: HeardAudio) -> None:
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            data = frame.to_ndarray()
            mono = data.reshape(-1, len(frame.layout.channels))[:, 0] if data.ndim else data
            heard.pcm += np.ascontiguousarray(mono, dtype="<i2").tobytes()
            heard.arrivals_ms.append(time.monotonic() * 1000)
