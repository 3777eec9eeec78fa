"""A fake Twilio on loopback: the far end of a Media Stream as Twilio documents it (no tests here).

What it does, from Twilio's Media Streams documentation (bidirectional, ``<Connect><Stream>``):

- it fetches TwiML from ``POST /twilio/voice`` (signed as Twilio signs, when
  given the auth token), opens the ``<Stream url>`` and sends ``connected``,
  then ``start`` with the ``<Parameter>``\\ s as ``customParameters``;
- it sends the caller's audio as ``media``: base64 mu-law at 8 kHz, 20 ms per
  message, paced at real time, and silence after the recording (a phone line
  keeps sending);
- it plays the bot's ``media`` from a buffer at real time, returns each
  ``mark`` when its playback passes it (at once when nothing is left to
  play), and on ``clear`` drops the buffer and returns every pending mark at
  once;
- every message is delayed ``latency_ms`` each way.

It records the ground truth a test compares against: what it played of each
utterance and when (utterances are known from the marks voxpipe names
``<item>@<position>ms/<n>``), when each ``clear`` arrived, and any bot
media that arrived after a ``clear`` before a new utterance began.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import collections
import contextlib
import heapq
import itertools
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
import soxr

from voxpipe.telephony.webhook import twilio_signature

CHUNK = 160  # 20 ms of mu-law at 8 kHz
SILENCE = b"\xff" * CHUNK
_MARK_NAME = re.compile(r"^(?P<key>.*)@(?P<pos>\d+)ms/\d+$")


def mulaw_recording(path: Any) -> bytes:
    """A recording as Twilio carries it: 8 kHz mu-law."""
    audio, rate = sf.read(str(path), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    pcm = (np.clip(soxr.resample(audio, rate, 8000), -1, 1) * 32767).astype("<i2").tobytes()
    return audioop.lin2ulaw(pcm, 2)


@dataclass
class Segment:
    """A stretch of bot audio in the playback buffer: ``key`` from ``position_ms``."""

    key: str | None
    position_ms: float
    start_ms: float
    end_ms: float
    mulaw: bytes

    def played_ms(self, now_ms: float) -> float:
        return max(0.0, min(self.end_ms, now_ms) - self.start_ms)


@dataclass
class FakeTwilio:
    """One call's stream, as Twilio would carry it (see the module docstring)."""

    caller: bytes  # mu-law, 8 kHz
    latency_ms: float = 0.0
    returns_marks: bool = True
    call_sid: str = "CA00000000000000000000000000000001"
    stream_sid: str = "MZ00000000000000000000000000000001"
    segments: list[Segment] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)  # when each clear reached us
    media_after_clear: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    closed_ms: float | None = None
    close_code: int | None = None
    media_started_ms: float = 0.0
    _t0: float = 0.0
    _out: list[tuple[float, int, str]] = field(default_factory=list)
    _out_seq: itertools.count[int] = field(default_factory=itertools.count)
    _inbox: collections.deque[tuple[float, str]] = field(default_factory=collections.deque)
    _marks: collections.deque[tuple[float, str]] = field(default_factory=collections.deque)
    _play_end_ms: float = 0.0
    _current: tuple[str | None, float] = (None, 0.0)
    _after_clear: bool = False
    _wake_sender: asyncio.Event = field(default_factory=asyncio.Event)
    _wake_player: asyncio.Event = field(default_factory=asyncio.Event)
    _speaking: bool = True

    def now_ms(self) -> float:
        return asyncio.get_running_loop().time() * 1000 - self._t0

    # -- the call --------------------------------------------------------------------------

    async def answer(
        self, base_url: str, auth_token: str | None = None, **form: str
    ) -> tuple[str, dict[str, str]]:
        """Ask the voice webhook for TwiML; the stream URL and its parameters."""
        params = {"CallSid": self.call_sid, "AccountSid": "AC0001", "From": "+15550001", **form}
        url = f"{base_url}/twilio/voice"
        headers = {}
        if auth_token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(auth_token, url, params.items())
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=params, headers=headers) as r,
        ):
            assert r.status == 200, (r.status, await r.text())
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url", ""), parameters

    async def run(self, stream_url: str, parameters: dict[str, str]) -> None:
        """Connect and stream until the socket closes (run it as a task)."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time() * 1000
        async with aiohttp.ClientSession() as http, http.ws_connect(stream_url) as ws:
            self._ws = ws
            self._post({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            self._post(self._start(parameters))
            tasks = [
                asyncio.create_task(self._sender(ws)),
                asyncio.create_task(self._player()),
                asyncio.create_task(self._speak()),
            ]
            try:
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self._inbox.append((self.now_ms() + self.latency_ms, message.data))
                        self._wake_player.set()
            finally:
                self.closed_ms = self.now_ms()
                self.close_code = ws.close_code
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, parameters: dict[str, str]) -> dict[str, Any]:
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {
            "accountSid": "AC0001",
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": media_format,
            "customParameters": parameters,
        }
        return {
            "event": "start",
            "sequenceNumber": "1",
            "start": start,
            "streamSid": self.stream_sid,
        }

    # -- controls a test uses ------------------------------------------------------------------

    def stop(self) -> None:
        """Twilio ends the stream (the caller hung up)."""
        self._speaking = False
        stop = {"accountSid": "AC0001", "callSid": self.call_sid}
        self._post({"event": "stop", "streamSid": self.stream_sid, "stop": stop})

    async def drop(self) -> None:
        """The socket goes away without a stop."""
        self._speaking = False
        await self._ws.close()

    def fall_silent(self) -> None:
        """Nothing more is sent (the socket stays open)."""
        self._speaking = False

    def send_raw(self, text: str) -> None:
        self._post(text)

    def press(self, digit: str) -> None:
        dtmf = {"track": "inbound_track", "digit": digit}
        self._post({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": dtmf})

    # -- ground truth ---------------------------------------------------------------------

    def heard_ms(self, key: str) -> float:
        """How far into utterance ``key`` playback got (by now, or by its clear)."""
        now = self.now_ms()
        heard = 0.0
        for segment in self.segments:
            if segment.key == key and segment.start_ms < min(now, segment.end_ms):
                heard = max(heard, segment.position_ms + segment.played_ms(now))
        return heard

    def loud_ms(self, threshold: float = 0.02) -> float:
        """Milliseconds of the bot's audio played above ``threshold`` (full scale 1.0)."""
        now, loud = self.now_ms(), 0.0
        for segment in self.segments:
            played = int(segment.played_ms(now) * 8)
            pcm = np.frombuffer(audioop.ulaw2lin(segment.mulaw[:played], 2), dtype="<i2")
            if pcm.size and np.sqrt(np.mean((pcm / 32768.0) ** 2)) > threshold:
                loud += played / 8
        return loud

    def caller_sent_ms(self, offset_ms: float) -> float:
        """When (our clock) the caller's audio at ``offset_ms`` into the recording was sent."""
        return self.media_started_ms + offset_ms

    # -- sending, each message ``latency_ms`` late ----------------------------------------

    def _post(self, message: dict[str, Any] | str, at_ms: float | None = None) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        due = (self.now_ms() if at_ms is None else at_ms) + self.latency_ms
        heapq.heappush(self._out, (due, next(self._out_seq), text))
        self._wake_sender.set()

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            while self._out and self._out[0][0] <= self.now_ms():
                await ws.send_str(heapq.heappop(self._out)[2])
            wait = (self._out[0][0] - self.now_ms()) / 1000 if self._out else None
            await _wait(self._wake_sender, wait)

    async def _speak(self) -> None:
        self.media_started_ms = self.now_ms()
        for i in itertools.count():
            if not self._speaking:
                return
            due = self.media_started_ms + i * 20
            await asyncio.sleep(max(0.0, due - self.now_ms()) / 1000)
            if not self._speaking:
                return
            chunk = self.caller[i * CHUNK : (i + 1) * CHUNK].ljust(CHUNK, b"\xff")
            media = {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20)}
            media["payload"] = base64.b64encode(chunk).decode()
            self._post({"event": "media", "streamSid": self.stream_sid, "media": media}, due)

    # -- playing, as Twilio's buffer does ----------------------------------------------------

    async def _player(self) -> None:
        while True:
            now = self.now_ms()
            while self._inbox and self._inbox[0][0] <= now:
                self._handle(json.loads(self._inbox.popleft()[1]), now)
            while self._marks and self._marks[0][0] <= now:
                due, name = self._marks.popleft()
                self._echo(name, due)
            dues = [queue[0][0] for queue in (self._inbox, self._marks) if queue]
            wait = (min(dues) - now) / 1000 if dues else None
            await _wait(self._wake_player, wait)

    def _handle(self, message: dict[str, Any], now: float) -> None:
        self.received.append(message)
        kind = message.get("event")
        if kind == "media":
            self._play(base64.b64decode(message["media"]["payload"]), now)
        elif kind == "mark":
            self._mark(message["mark"]["name"], now)
        elif kind == "clear":
            self._clear(now)

    def _play(self, mulaw: bytes, now: float) -> None:
        if self._after_clear:
            self.media_after_clear += 1
        key, position = self._current
        start = max(now, self._play_end_ms)
        self._play_end_ms = start + len(mulaw) / 8
        self.segments.append(Segment(key, position, start, self._play_end_ms, mulaw))
        self._current = (key, position + len(mulaw) / 8)

    def _mark(self, name: str, now: float) -> None:
        named = _MARK_NAME.match(name)
        if named is not None:
            self._current = (named["key"], float(named["pos"]))
            if named["pos"] == "0":
                self._after_clear = False  # a new utterance begins
        self._marks.append((max(now, self._play_end_ms), name))

    def _clear(self, now: float) -> None:
        self.clears_ms.append(now)
        self._after_clear = True
        kept = []
        for segment in self.segments:
            if segment.start_ms >= now:
                continue  # never played
            segment.end_ms = min(segment.end_ms, now)
            kept.append(segment)
        self.segments = kept
        self._play_end_ms = min(self._play_end_ms, now)
        while self._marks:  # every pending mark comes back at once
            self._echo(self._marks.popleft()[1], now)

    def _echo(self, name: str, at_ms: float) -> None:
        if self.returns_marks:
            self._post(
                {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}, at_ms
            )


async def _wait(event: asyncio.Event, timeout_s: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    event.clear()
