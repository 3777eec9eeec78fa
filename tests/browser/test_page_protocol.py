"""The package's page against a bare aiortc peer that speaks its side of the protocol
(transports/webrtc/PROTOCOL.md): what a caller sees and what the server is told, in headless
Chromium, with no pipecat and no models in the way."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from browser import Browser, in_loopback_netns, launch_browser
from loopback import serving

PAGE = Path(__file__).resolve().parents[2] / "transports" / "webrtc" / "page"

Message = dict[str, Any]
TONE_RMS = 0.3 / 2**0.5  # the agent's 440 Hz tone at amplitude 0.3


class ToneTrack(AudioStreamTrack):
    """The agent: a steady 440 Hz tone, 20 ms frames at 48 kHz, paced in real time."""

    async def recv(self) -> av.AudioFrame:
        silence = await super().recv()  # the base class paces and stamps 8 kHz frames
        assert silence.pts is not None
        start = silence.pts * 6
        t = (np.arange(960) + start) / 48_000
        tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, start
        frame.time_base = fractions.Fraction(1, 48_000)
        return frame


async def _record(track: MediaStreamTrack, into: list[np.ndarray]) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            into.append(frame.to_ndarray().astype(np.float64).ravel() / 32768)


@dataclass
class Peer:
    """What a page said to one aiortc peer connection."""

    offer: Message
    pc: RTCPeerConnection
    channel: RTCDataChannel | None = None
    pings: int = 0
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, message: Message) -> None:
        assert self.channel is not None
        self.channel.send(json.dumps(message))

    async def next(self, kind: str, timeout_s: float = 5.0) -> Message:
        """The next JSON message of type ``kind`` (earlier ones of other types are dropped)."""
        async with asyncio.timeout(timeout_s):
            while (message := await self.messages.get())["type"] != kind:
                pass
        return message


@dataclass
class ServerSide:
    """The server's half: answers offers from aiortc, refusing when told to."""

    peers: list[Peer] = field(default_factory=list)
    refuse: tuple[int, str] | None = None
    heard: list[np.ndarray] = field(default_factory=list)  # the page's microphone, as received
    _recorders: set[asyncio.Task[None]] = field(default_factory=set)
    arrived: asyncio.Queue[Peer] = field(default_factory=asyncio.Queue)

    async def offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.refuse is not None:
            status, reason = self.refuse
            return web.json_response({"error": reason}, status=status)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = Peer(offer=body, pc=pc)
        pc.on("datachannel", lambda channel: self._wire(peer, channel))
        pc.on(
            "track",
            lambda track: self._recorders.add(asyncio.ensure_future(_record(track, self.heard))),
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        pc.addTrack(ToneTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        self.peers.append(peer)
        self.arrived.put_nowait(peer)
        answer = pc.localDescription
        number = len(self.peers)
        return web.json_response(
            {"sdp": answer.sdp, "type": answer.type, "pc_id": f"pc-{number}", "call_id": "call-1",
             "resume": f"resume-{number}"}
        )  # fmt: skip

    def _record(self, track: MediaStreamTrack) -> None:
        self._recorders.add(asyncio.ensure_future(_record(track, self.heard)))

    def _wire(self, peer: Peer, channel: RTCDataChannel) -> None:
        peer.channel = channel
        peer.opened.set()

        @channel.on("message")
        def on_message(data: str) -> None:
            if data == "ping":
                peer.pings += 1
            else:
                peer.messages.put_nowait(json.loads(data))

    async def close(self) -> None:
        for peer in self.peers:
            await peer.pc.close()
        for recorder in self._recorders:
            recorder.cancel()


def _app(server: ServerSide) -> web.Application:
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")

    async def config(_: web.Request) -> web.Response:
        return web.json_response({"iceServers": []})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/config", config)
    app.router.add_post("/api/offer", server.offer)
    app.router.add_static("/static/", PAGE)
    return app


@contextlib.contextmanager
def _aioice_gathers_loopback() -> Iterator[None]:
    # aioice leaves 127.0.0.1 out of its host candidates: the only interface in the namespace.
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


@contextlib.asynccontextmanager
async def _call(
    query: str, microphone: Path | None = None
) -> AsyncIterator[tuple[Browser, ServerSide]]:
    server = ServerSide()
    with _aioice_gathers_loopback():
        async with serving(_app(server)) as url, launch_browser(microphone) as browser:
            try:
                await browser.navigate(f"{url}/?{query}")
                yield browser, server
            finally:
                await server.close()


async def _connected(browser: Browser, server: ServerSide) -> Peer:
    peer = await asyncio.wait_for(server.arrived.get(), 10)
    await browser.wait_for("window.voxpipe.state === 'connected'")
    await asyncio.wait_for(peer.opened.wait(), 5)
    return peer


async def _page(browser: Browser, expression: str = "window.voxpipe") -> Any:
    return await browser.evaluate(expression)


def _rate(reports: list[Message]) -> float:
    """RTP samples per ms of playout: the slope through every report (a loaded page delivers
    frames late and in bursts, so two reports alone were off by 5% once in nine runs)."""
    rtp = np.array([(r["rtp"] - reports[0]["rtp"]) % 2**32 for r in reports], dtype=np.float64)
    at = np.array([r["ssrc_ts"] for r in reports], dtype=np.float64)
    return float(np.polyfit(at - at[0], rtp, 1)[0])


@in_loopback_netns
async def test_a_call_reports_playout_shows_captions_and_hangs_up() -> None:
    async with _call("autostart=1&token=T1") as (browser, server):
        peer = await _connected(browser, server)
        assert peer.offer["token"] == "T1" and "resume" not in peer.offer
        assert peer.offer["sdp"].split("m=")[1].startswith("audio")  # audio transceiver first
        assert peer.channel is not None and peer.channel.label == "voxpipe"

        # Playout reports: the RTP clock the page played, against the wall clock it shares.
        # 4 s of reports, past the jitter buffer's start.
        reports = [await peer.next("playout") for _ in range(45)][5:]
        assert all(r["rtp"] is not None for r in reports)
        assert abs(reports[-1]["now"] - time.time() * 1000) < 1000
        assert 0 <= reports[-1]["now"] - reports[-1]["ssrc_ts"] < 1000
        # Opus's RTP clock is 48 kHz (RFC 7587): 48 ticks per ms played out (48.0 on a quiet
        # machine). The slope is the server's sending pace as the page received it, so a
        # sender starved of CPU falls behind: 45.8 in a fresh-clone run at load ~10 with a
        # busy core. The bounds tell 48 kHz from a report in another unit (24 kHz audio,
        # 16 kHz, ms), not a loaded machine's pace from a quiet one's.
        assert 40 < _rate(reports) < 56
        assert 0 < reports[-1]["delay_ms"] < 500  # audio device delay after that (30 ms here)
        assert peer.pings >= 1

        peer.send({"type": "playout_request"})
        answered = await peer.next("playout", timeout_s=1)
        assert answered["now"] >= reports[-1]["now"]

        for role, text, final in [
            ("caller", "what time", False),
            ("caller", "What time do you open?", True),
            ("bot", "We open", False),
        ]:
            peer.send({"type": "caption", "role": role, "text": text, "final": final})
        peer.send({"type": "event", "name": "interrupted", "item_id": "item_1"})
        await browser.wait_for("window.voxpipe.remoteMuted")
        assert await _page(browser, "document.getElementById('remote').muted") is True
        # A start for the reply that was cut (late, from the chunk the server's output held):
        # the page stays muted. The next reply's start unmutes it.
        peer.send({"type": "event", "name": "bot_started_speaking", "item_id": "item_1"})
        await browser.wait_for("window.voxpipe.counters.cutStarts === 1")
        assert await _page(browser, "document.getElementById('remote').muted") is True
        peer.send({"type": "event", "name": "bot_started_speaking", "item_id": "item_2"})
        await browser.wait_for("!window.voxpipe.remoteMuted")
        peer.send({"type": "caption", "role": "bot", "text": "We open at nine.", "final": True})
        await browser.wait_for("window.voxpipe.captions.filter((c) => c.final).length === 2")
        shown = await _page(browser, "document.getElementById('captions').innerText")
        assert shown.split("\n") == ["You:What time do you open?", "Agent:We open at nine."]

        await browser.evaluate("document.getElementById('hangup').click()")
        assert (await peer.next("hangup"))["type"] == "hangup"
        state = await _page(browser)
    assert state["state"] == "ended" and state["errors"] == []
    assert state["captions"] == [
        {"role": "caller", "text": "What time do you open?", "final": True},
        {"role": "bot", "text": "We open at nine.", "final": True},
    ]
    assert [(e["name"], e["item"]) for e in state["events"]] == [
        ("interrupted", "item_1"),
        ("bot_started_speaking", "item_2"),
    ]
    assert [(m["muted"], m["item"]) for m in state["mutes"]] == [
        (True, "item_1"),
        (False, "item_2"),
    ]
    assert state["counters"]["playoutRequests"] == 1 and state["counters"]["ignored"] == 0


@in_loopback_netns
async def test_a_dropped_connection_rejoins_the_call_with_its_resume_token() -> None:
    async with _call("autostart=1&token=T1") as (browser, server):
        first = await _connected(browser, server)
        await browser.evaluate("window.voxpipe.rejoin()")  # as a network switch would
        second = await _connected(browser, server)
        await second.next("playout")  # audio flows on the new connection
        state = await _page(browser)
    assert second.offer["resume"] == "resume-1" and "token" not in second.offer  # single use
    assert first.pc.connectionState == "closed"
    assert state["resumed"] is True and state["callId"] == "call-1" and state["pcId"] == "pc-2"
    assert state["counters"]["rejoins"] == 1 and state["errors"] == []


@in_loopback_netns
async def test_a_refused_offer_fails_the_call_with_the_servers_reason() -> None:
    async with _call("") as (browser, server):
        server.refuse = (401, "this call needs a valid call token")
        assert await _page(browser, "window.voxpipe.state") == "idle"  # nothing without a click
        await browser.evaluate("document.getElementById('talk').click()")
        await browser.wait_for("window.voxpipe.state === 'failed'")
        note = await _page(browser, "document.getElementById('note').textContent")
        talk = await _page(browser, "document.getElementById('talk').outerHTML")
        state = await _page(browser)
    assert note == "the server refused the call (401): this call needs a valid call token"
    assert talk == '<button id="talk" type="button">Call again</button>'  # enabled again
    assert state["errors"][0]["where"] == "start" and state["counters"]["offers"] == 1
    assert state["dcState"] == "closed" and state["pcState"] == "closed"


@pytest.mark.parametrize("echo_db", [None, -20])
@in_loopback_netns
async def test_the_speakerphone_option_mixes_the_agent_into_the_microphone(
    echo_db: int | None, tmp_path: Path
) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48_000 * 10), 48_000, subtype="PCM_16")
    query = "autostart=1&dsp=0" + (f"&echo_db={echo_db}" if echo_db is not None else "")
    async with _call(query, microphone=silent) as (browser, server):
        peer = await _connected(browser, server)
        for _ in range(20):  # 2 s of the agent playing on the page
            await peer.next("playout")
        recent = np.concatenate(server.heard[-50:])  # the last second of the microphone
    rms = float(np.sqrt(np.mean(recent**2)))
    if echo_db is None:
        assert rms < 0.001  # a silent microphone, echo cancellation or not
    else:
        # The agent 20 dB down (measured 0.71 of that: WebAudio's mix and Opus take 3 dB).
        assert 0.5 < rms / (TONE_RMS * 10 ** (echo_db / 20)) < 2
