"""The far end of a phone call's media stream, as the providers document it (no tests here).

What every provider does alike, from their documentation (Twilio Media
Streams, Telnyx media streaming, Plivo audio streams, all bidirectional):

- it opens the stream URL its answer gave and sends its opening messages
  (a provider's ``connected`` and ``start``, with our parameters);
- it sends the caller's audio as ``media``: base64 G.711 at 8 kHz, 20 ms per
  message, paced at real time, and silence after the recording (a phone line
  keeps sending);
- a caller may barge in as a person does, on what they hear rather than on a
  clock: given ``barge_in`` (a second line), it is sent once the caller's
  recording is over and ``barge_in_after_ms`` of the bot's audio has played
  (``barge_in_sent_ms`` says when). A fixed gap in one recording cannot do
  this: on a loaded machine the reply reached the fake seconds late and the
  "barge-in" landed before it began, so a test measured something else;
- it plays the bot's media from a buffer at real time, returns each mark
  (Plivo: checkpoint) when its playback passes it (at once when nothing is
  left to play), and on a clear drops the buffer: Twilio and Telnyx return
  every pending mark at once, Plivo drops them and says ``clearedAudio``;
- every message is delayed ``latency_ms`` each way.

It records the ground truth a test compares against: what it played of each
utterance and when (utterances are known from the marks voxpipe names
``<item>@<position>ms/<n>``), when each clear arrived, and any bot media
that arrived after a clear before a new utterance began. A provider's fake
(``fake_twilio``, ``fake_telnyx``, ``fake_plivo``) says how it spells all that.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import heapq
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import numpy as np
import soundfile as sf
import soxr

from voxpipe.telephony.codec import AudioEncoding

CHUNK = 160  # 20 ms of G.711 at 8 kHz
_MARK_NAME = re.compile(r"^(?P<key>.*)@(?P<pos>\d+)ms/\d+$")


def phone_recording(path: Any, law: AudioEncoding = AudioEncoding.MULAW) -> bytes:
    """A recording as a phone network carries it: 8 kHz G.711."""
    audio, rate = sf.read(str(path), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    pcm = (np.clip(soxr.resample(audio, rate, 8000), -1, 1) * 32767).astype("<i2").tobytes()
    return law.encode(pcm)


@dataclass
class Segment:
    """A stretch of bot audio in the playback buffer: ``key`` from ``position_ms``."""

    key: str | None
    position_ms: float
    start_ms: float
    end_ms: float
    payload: bytes

    def played_ms(self, now_ms: float) -> float:
        return max(0.0, min(self.end_ms, now_ms) - self.start_ms)


@dataclass
class FakeCarrier:
    """One call's stream, as a provider would carry it (see the module docstring)."""

    MEDIA: ClassVar[str] = "media"  # what the provider calls our messages
    MARK: ClassVar[str] = "mark"
    CLEAR: ClassVar[str] = "clear"
    FLUSHES_MARKS: ClassVar[bool] = True  # a clear returns the pending marks (not Plivo)

    caller: bytes  # G.711 in ``law``, 8 kHz
    latency_ms: float = 0.0
    returns_marks: bool = True
    law: AudioEncoding = AudioEncoding.MULAW
    segments: list[Segment] = field(default_factory=list)
    clears_ms: list[float] = field(default_factory=list)  # when each clear reached us
    media_after_clear: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    closed_ms: float | None = None
    close_code: int | None = None
    media_started_ms: float = 0.0
    barge_in: bytes | None = None  # a line said once ``barge_in_after_ms`` of the bot played
    barge_in_after_ms: float = 1000.0
    barge_in_sent_ms: float | None = None  # when its first chunk was sent (our clock)
    barge_in_heard_ms: float = 0.0  # the bot's audio played by then
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
    _ws: Any = None

    def now_ms(self) -> float:
        return asyncio.get_running_loop().time() * 1000 - self._t0

    # -- what a provider spells its own way -----------------------------------------------

    def opening(self, parameters: dict[str, str]) -> list[dict[str, Any]]:
        """The messages that open the stream (``connected``, ``start``)."""
        raise NotImplementedError

    def media_message(self, index: int, payload: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def echo_message(self, name: str) -> dict[str, Any]:
        """A returned mark."""
        raise NotImplementedError

    def cleared_message(self) -> dict[str, Any] | None:
        """What answers a clear itself (Plivo's ``clearedAudio``), if anything."""
        return None

    def payload_of(self, message: dict[str, Any]) -> bytes:
        return base64.b64decode(message["media"]["payload"])

    def mark_name_of(self, message: dict[str, Any]) -> str:
        return str(message["mark"]["name"])

    # -- the call ------------------------------------------------------------------------

    async def run(self, stream_url: str, parameters: dict[str, str]) -> None:
        """Connect and stream until the socket closes (run it as a task)."""
        self._t0 = asyncio.get_running_loop().time() * 1000
        async with aiohttp.ClientSession() as http, http.ws_connect(stream_url) as ws:
            self._ws = ws
            for message in self.opening(parameters):
                self._post(message)
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

    # -- controls a test uses ------------------------------------------------------------------

    async def drop(self) -> None:
        """The socket goes away without a stop."""
        self._speaking = False
        await self._ws.close()

    def fall_silent(self) -> None:
        """Nothing more is sent (the socket stays open)."""
        self._speaking = False

    def send_raw(self, text: str) -> None:
        self._post(text)

    def post(self, message: dict[str, Any]) -> None:
        self._post(message)

    def stop_speaking(self) -> None:
        self._speaking = False

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
            pcm = np.frombuffer(self.law.decode(segment.payload[:played]), dtype="<i2")
            if pcm.size and np.sqrt(np.mean((pcm / 32768.0) ** 2)) > threshold:
                loud += played / 8
        return loud

    def played_ms(self) -> float:
        """Milliseconds of the bot's audio played so far in the call (silence included)."""
        now = self.now_ms()
        return sum(segment.played_ms(now) for segment in self.segments)

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
        quiet = bytes([self.law.silence]) * CHUNK
        line, first = self.caller, 0  # the line being said, and the chunk it began at
        for i in itertools.count():
            if not self._speaking:
                return
            due = self.media_started_ms + i * 20
            await asyncio.sleep(max(0.0, due - self.now_ms()) / 1000)
            if not self._speaking:
                return
            if self._barges_in(i):
                assert self.barge_in is not None
                line, first = self.barge_in, i
                self.barge_in_sent_ms, self.barge_in_heard_ms = due, self.played_ms()
            chunk = line[(i - first) * CHUNK : (i - first + 1) * CHUNK]
            chunk += quiet[len(chunk) :]
            self._post(self.media_message(i, chunk), due)

    def _barges_in(self, chunk: int) -> bool:
        """Whether the caller starts ``barge_in`` now: their recording said, enough heard."""
        return (
            self.barge_in is not None
            and self.barge_in_sent_ms is None
            and chunk * CHUNK >= len(self.caller)
            and self.played_ms() >= self.barge_in_after_ms
        )

    # -- playing, as the provider's buffer does ----------------------------------------------

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
        if kind == self.MEDIA:
            self._play(self.payload_of(message), now)
        elif kind == self.MARK:
            self._mark(self.mark_name_of(message), now)
        elif kind == self.CLEAR:
            self._clear(now)

    def _play(self, payload: bytes, now: float) -> None:
        if self._after_clear:
            self.media_after_clear += 1
        key, position = self._current
        start = max(now, self._play_end_ms)
        self._play_end_ms = start + len(payload) / 8
        self.segments.append(Segment(key, position, start, self._play_end_ms, payload))
        self._current = (key, position + len(payload) / 8)

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
        while self._marks:
            name = self._marks.popleft()[1]
            if self.FLUSHES_MARKS:  # every pending mark comes back at once
                self._echo(name, now)
        answer = self.cleared_message()
        if answer is not None and self.returns_marks:
            self._post(answer, now)

    def _echo(self, name: str, at_ms: float) -> None:
        if self.returns_marks:
            self._post(self.echo_message(name), at_ms)


async def _wait(event: asyncio.Event, timeout_s: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    event.clear()
