"""A WebRTC caller without a browser: an aiortc peer that speaks a recording and records the bot.

It does what the page does (audio transceiver first, a "voxpipe" data channel
with pings every 500 ms, the offer POSTed to ``/api/offer``) and keeps every
bot audio frame it receives with its arrival time, so a test can transcribe
what the caller heard and know when. No tests here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
    """The bot's audio as the caller received it: 48 kHz mono int16, and when each frame came.

    The peer plays each frame as it arrives (no jitter buffer), so the RTP
    timestamp of the newest frame is what it is playing.
    """

    pcm: bytearray = field(default_factory=bytearray)
    arrivals_ms: list[float] = field(default_factory=list)
    rtp: int | None = None  # RTP timestamp of the newest frame (48 kHz)
    first_rtp: int | None = None
    rtp_at_ms: float = 0.0

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
    interrupted_rtp: list[int] = field(default_factory=list)  # where it was at each interruption
    vanished: bool = False

    def vanish(self) -> None:
        """Go silent as a killed tab does: no more media, no pings, and no goodbye."""
        self.vanished = True
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
    url: str,
    recording: Path,
    *,
    token: str | None = None,
    resume: str | None = None,
    ping: bool = True,
    report_playout: bool = False,
) -> AsyncIterator[Caller]:
    """Call ``url`` (a ``voxpipe serve``) with ``recording`` as the microphone.

    ``report_playout`` sends the page's playout reports (every 100 ms, and at
    once when asked), as the browser page does.
    """
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
    if resume is not None:
        body["resume"] = resume  # a new connection of the same call (a network switch)
    status, answer = await offer(url, body)
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    for receiver in pc.getReceivers():
        _note_rtp(receiver, heard)
    caller = Caller(pc, answer, heard, player, pinger)

    def _report() -> None:
        if channel.readyState == "open" and heard.rtp is not None:
            now = time.monotonic() * 1000
            report = {"type": "playout", "rtp": heard.rtp, "ssrc_ts": heard.rtp_at_ms, "now": now}
            channel.send(json.dumps({**report, "delay_ms": 0}))

    async def _reporter() -> None:
        while True:
            _report()
            await asyncio.sleep(0.1)

    @channel.on("message")
    def _on_message(message: Any) -> None:
        caller.messages.append(message)
        if not isinstance(message, str) or not message.startswith("{"):
            return
        parsed = json.loads(message)
        if parsed.get("name") == "interrupted" and heard.rtp is not None:
            caller.interrupted_rtp.append(heard.rtp)
        if parsed.get("type") == "playout_request" and report_playout:
            _report()

    if report_playout:
        tasks.append(asyncio.create_task(_reporter()))

    started = time.monotonic()
    async with asyncio.timeout(15):
        while pc.connectionState != "connected":  # noqa: ASYNC110 - aiortc's state
            await asyncio.sleep(0.01)
    caller.connected_ms = (time.monotonic() - started) * 1000
    try:
        yield caller
    finally:
        if channel.readyState == "open" and not caller.vanished:
            channel.send(json.dumps({"type": "hangup"}))  # as the page does before it closes
            await asyncio.sleep(0.2)
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


def _note_rtp(receiver: Any, heard: HeardAudio) -> None:
    """Keep the RTP timestamp of each audio packet as it arrives (a browser's SSRC info).

    aiortc's receiver does not expose it (its synchronization sources carry no
    RTP timestamp), so this far-end stand-in reads each packet on its way in.
    """
    handle = receiver._handle_rtp_packet

    async def noting(packet: Any, arrival_time_ms: int) -> None:
        heard.rtp = packet.timestamp
        heard.first_rtp = packet.timestamp if heard.first_rtp is None else heard.first_rtp
        heard.rtp_at_ms = time.monotonic() * 1000
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = noting
