"""A WebRTC caller without a browser: an aiortc peer that speaks a recording and records the bot.

It does what the page does (audio transceiver first, a "voxpipe" data channel
with pings every 500 ms, the offer POSTed to ``/api/offer``) and keeps every
bot audio frame it receives with its arrival time, so a test can transcribe
what the caller heard and know when. With ``echo_db`` it is a speakerphone
without echo cancellation: what it plays leaks back into its microphone
(:class:`EchoLine`, :class:`EchoingMicrophone`). No tests here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
import soxr
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

MIC_RATE = 48_000  # Opus's rate: what aiortc sends and receives


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


class EchoLine:
    """The acoustic path of a speakerphone without echo cancellation.

    The caller plays each bot frame as it arrives (:meth:`played`); its
    microphone picks that up ``delay_ms`` later, ``gain_db`` quieter
    (:meth:`take`). The line holds about ``delay_ms`` of audio: it starts once
    that much has arrived, drops what piles up beyond it (the two ends run on
    different clocks), and is silent when the bot's stream starves.
    """

    def __init__(self, gain_db: float, delay_ms: int, rate: int = MIC_RATE) -> None:
        self.gain = 10 ** (gain_db / 20)
        self.delay = rate * delay_ms // 1000
        self.slack = rate * 40 // 1000
        self.buffer = np.zeros(0, dtype=np.float32)
        self.primed = False

    def played(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate((self.buffer, samples.astype(np.float32)))

    def take(self, n: int) -> np.ndarray:
        if not self.primed and self.buffer.size < self.delay + n:
            return np.zeros(n, dtype=np.float32)
        self.primed = self.buffer.size >= n
        if not self.primed:
            return np.zeros(n, dtype=np.float32)
        if self.buffer.size > self.delay + n + self.slack:
            self.buffer = self.buffer[self.buffer.size - (self.delay + n) :]
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out * self.gain


@dataclass(frozen=True)
class Said:
    """An utterance the :class:`Microphone` sent: when it began and ended (monotonic ms)."""

    path: Path
    started_ms: float
    ended_ms: float


class Microphone(MediaStreamTrack):
    """A caller's microphone that speaks when told to, with the :class:`EchoLine` mixed in.

    It sends 20 ms frames at real time: silence, or the recordings queued with
    :meth:`say` one after another, plus the echo of what the caller plays. It
    keeps when each utterance went out (``said``), so a test knows whether the
    caller was speaking at a moment.
    """

    kind = "audio"
    FRAME = MIC_RATE // 50

    def __init__(self, line: EchoLine) -> None:
        super().__init__()
        self.line = line
        self.said: list[Said] = []
        self._queue: list[tuple[Path, np.ndarray]] = []
        self._speaking: tuple[Path, float] | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._sent = 0
        self._start: float | None = None

    def say(self, path: Path) -> None:
        """Speak the recording at ``path`` once what is queued before it has been said."""
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        self._queue.append((path, soxr.resample(audio[:, 0], rate, MIC_RATE) * 32767))

    @property
    def speaking(self) -> bool:
        return self._speaking is not None or bool(self._queue)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        self._start = now if self._start is None else self._start
        wait = self._start + self._sent / MIC_RATE - now
        if wait > 0:
            await asyncio.sleep(wait)
        voice = self._next_voice(time.monotonic() * 1000)
        mixed = voice + self.line.take(self.FRAME)
        frame = AudioFrame.from_ndarray(
            np.clip(mixed, -32768, 32767).astype("<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = MIC_RATE, self._sent
        frame.time_base = fractions.Fraction(1, MIC_RATE)
        self._sent += self.FRAME
        return frame

    def _next_voice(self, now_ms: float) -> np.ndarray:
        if self._pending.size == 0 and self._speaking is not None:
            self.said.append(Said(self._speaking[0], self._speaking[1], now_ms))
            self._speaking = None
        if self._pending.size == 0 and self._queue:
            path, self._pending = self._queue.pop(0)
            self._speaking = (path, now_ms)
        voice = np.zeros(self.FRAME, dtype=np.float32)
        piece, self._pending = self._pending[: self.FRAME], self._pending[self.FRAME :]
        voice[: piece.size] = piece
        return voice

    def spoke_between(self, start_ms: float, end_ms: float) -> bool:
        """Whether the caller was speaking at any moment from ``start_ms`` to ``end_ms``."""
        spans = [(said.started_ms, said.ended_ms) for said in self.said]
        if self._speaking is not None:
            spans.append((self._speaking[1], math.inf))
        return any(s < end_ms and e > start_ms for s, e in spans)


@dataclass
class Caller:
    """A connected peer: its connection, answer and what it heard."""

    pc: RTCPeerConnection
    answer: dict[str, Any]
    heard: HeardAudio
    player: MediaPlayer | None
    pinger: asyncio.Task[None] | None
    connected_ms: float | None = None
    messages: list[Any] = field(default_factory=list)
    interrupted_rtp: list[int] = field(default_factory=list)  # where it was at each interruption
    interrupted_ms: list[float] = field(default_factory=list)  # when it was told (monotonic)
    mic: Microphone | None = None  # with echo_db: its microphone (say more with mic.say)
    vanished: bool = False

    def vanish(self) -> None:
        """Go silent as a killed tab does: no more media, no pings, and no goodbye."""
        self.vanished = True
        if self.pinger is not None:
            self.pinger.cancel()
        if self.player is not None and self.player.audio is not None:
            self.player.audio.stop()
        if self.mic is not None:
            self.mic.stop()


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
    echo_db: float | None = None,
    echo_delay_ms: int = 40,
    live_mic: bool = False,
) -> AsyncIterator[Caller]:
    """Call ``url`` (a ``voxpipe serve``) with ``recording`` as the microphone.

    ``report_playout`` sends the page's playout reports (every 100 ms, and at
    once when asked), as the browser page does. ``echo_db`` (e.g. -20) mixes
    what the caller plays back into its microphone that much quieter and
    ``echo_delay_ms`` later: a speakerphone without echo cancellation. Its
    microphone (``caller.mic``) then says ``recording`` first and whatever the
    test tells it to say later, and never runs out. ``live_mic`` gives that microphone
    without the echo (a headset).
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: loopback only
    if live_mic and echo_db is None:
        echo_db = -math.inf  # no acoustic path: the echo line carries nothing
    line = EchoLine(echo_db, echo_delay_ms) if echo_db is not None else None
    mic = Microphone(line) if line is not None else None
    player = MediaPlayer(str(recording)) if mic is None else None
    if mic is not None:
        mic.say(recording)
    source = mic if mic is not None else player.audio if player is not None else None
    pc.addTransceiver(source, direction="sendrecv")  # the audio transceiver first
    channel = pc.createDataChannel("voxpipe")
    heard = HeardAudio()
    tasks: list[asyncio.Task[Any]] = []

    @pc.on("track")
    def _on_track(track: Any) -> None:
        tasks.append(asyncio.create_task(_record(track, heard, line)))

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
    caller = Caller(pc, answer, heard, player, pinger, mic=mic)

    def _report(requested: bool = False) -> None:
        if channel.readyState == "open" and heard.rtp is not None:
            now = time.monotonic() * 1000
            report = {"type": "playout", "rtp": heard.rtp, "ssrc_ts": heard.rtp_at_ms, "now": now}
            report |= {"requested": True} if requested else {}
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
        if parsed.get("name") == "interrupted":
            caller.interrupted_ms.append(time.monotonic() * 1000)
            if heard.rtp is not None:
                caller.interrupted_rtp.append(heard.rtp)
        if parsed.get("type") == "playout_request" and report_playout:
            _report(requested=True)

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
        if player is not None and player.audio is not None:
            player.audio.stop()
        if mic is not None:
            mic.stop()
        await pc.close()


async def _record(track: Any, heard: HeardAudio, line: EchoLine | None) -> None:
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            data = frame.to_ndarray()
            mono = data.reshape(-1, len(frame.layout.channels))[:, 0] if data.ndim else data
            heard.pcm += np.ascontiguousarray(mono, dtype="<i2").tobytes()
            heard.arrivals_ms.append(time.monotonic() * 1000)
            if line is not None:
                line.played(mono)  # the speaker plays it as it arrives


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
