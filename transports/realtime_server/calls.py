"""A WebRTC call on the embedded server: the same session, its audio on media tracks.

OpenAI's WebRTC call API (``POST /v1/realtime/calls``) puts the caller's
audio and the reply's on an Opus media track and the session's events on the
``oai-events`` data channel; an application server may attach to the same
session over a "sideband" WebSocket (``GET /v1/realtime?call_id=...``) and
sees and sends the same events. Here that is the WebSocket path's
:class:`~.driver.SessionDriver` and its sans-I/O core with three differences,
all in this module: the client's events come from the data channel and every
sideband (:class:`CallEvents`), caller audio comes from the track
(:meth:`CallDriver.listen`), and reply audio goes out on the server's own
track (:class:`ReplyTrack`) instead of as ``response.output_audio.delta``
events, so the server knows what was played and truncates on a barge-in
itself (:class:`~voxpipe.realtime_server.server_playout.ServerPlayout`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pydantic
from aiohttp import WSMessage, web
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler
from loguru import logger
from openai.types.realtime import ResponseAudioDeltaEvent, ResponseDoneEvent

from voxpipe.realtime_server import codec
from voxpipe.realtime_server.effects import Output
from voxpipe.realtime_server.session import Media
from voxpipe.transports.realtime_server.driver import SessionDriver, text_message

EVENTS_CHANNEL = "oai-events"
RATE = codec.PROTOCOL_PCM_RATE  # the reply track's rate; aiortc's Opus encoder takes it to 48 kHz
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
EARLY_EVENTS_KEPT = 1_000  # events before the data channel opens (session.created, at least)
SIDEBAND_SEND_S = 5.0  # a sideband that takes nothing for this long is dropped, not waited for


class CallEvents:
    """A call's event channel: the ``oai-events`` data channel plus any sidebands.

    It is the driver's :class:`~.driver.EventSocket`: every event the session
    produces goes to the page's data channel (held until it opens) and to
    each attached sideband; what any of them sends is one stream of client
    events, in arrival order. Closing it ends the call and closes the sidebands.
    """

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[WSMessage | None] = asyncio.Queue()
        self._channel: RTCDataChannel | None = None
        self._early: deque[str] = deque(maxlen=EARLY_EVENTS_KEPT)
        self.sidebands: set[web.WebSocketResponse] = set()
        self._closed = False
        self.close_code: int | None = None
        # Set once every sideband's close handshake is over: a sideband's handler must not
        # return before it (aiohttp would drop the connection under the close: a 1006).
        self.sidebands_closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        """Whether the call has ended."""
        return self._closed

    def attach_channel(self, channel: RTCDataChannel) -> None:
        """The page's ``oai-events`` channel: events held so far go out now."""
        self._channel = channel

        @channel.on("message")
        def _on_message(message: str | bytes) -> None:
            self.received(message)

        while self._early and channel.readyState == "open":
            channel.send(self._early.popleft())

    def received(self, message: str | bytes) -> None:
        """A client event from the page or a sideband."""
        if self._closed:
            return
        if isinstance(message, str):
            self._inbox.put_nowait(text_message(message))
        else:
            from aiohttp import WSMsgType

            self._inbox.put_nowait(WSMessage(WSMsgType.BINARY, message, None))

    async def send_str(self, data: str, compress: int | None = None) -> None:
        """One event to the page and every sideband."""
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(data)
        elif channel is None:
            self._early.append(data)
        for ws in list(self.sidebands):
            try:
                async with asyncio.timeout(SIDEBAND_SEND_S):
                    await ws.send_str(data)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                logger.warning("a sideband stopped taking events ({!r}); dropping it", exc)
                self.sidebands.discard(ws)
                with contextlib.suppress(Exception):
                    await ws.close(code=1011, message=b"sideband not reading")

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        """End the call: the session stops reading and every sideband is closed with ``code``."""
        if self._closed:
            return False
        self._closed = True
        self.close_code = code
        self._inbox.put_nowait(None)
        for ws in list(self.sidebands):
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=message)
        self.sidebands.clear()
        self.sidebands_closed.set()
        return True

    def __aiter__(self) -> AsyncIterator[WSMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[WSMessage]:
        while (message := await self._inbox.get()) is not None:
            yield message


class ReplyTrack(MediaStreamTrack):
    """The server's outgoing audio: queued reply audio at real time, silence between replies.

    It reports each 20 ms of an item's audio as it goes out (``on_sent``) and
    the moment its queue runs dry after audio (``on_drained``): the playout
    ledger's two inputs.
    """

    kind = "audio"

    def __init__(
        self, on_sent: Callable[[str, float], None], on_drained: Callable[[], None]
    ) -> None:
        super().__init__()
        self._on_sent = on_sent
        self._on_drained = on_drained
        self._frames: deque[tuple[str, bytes, float]] = deque()
        self._partial: tuple[str, bytearray] | None = None
        self._start: float | None = None
        self._sent_samples = 0
        self._after_audio = False

    def queue(self, item_id: str, pcm16: bytes) -> None:
        """Queue an item's audio (24 kHz PCM16) behind what is queued."""
        if self._partial is not None and self._partial[0] != item_id:
            self._flush_partial()
        held = self._partial[1] if self._partial is not None else bytearray()
        held.extend(pcm16)
        while len(held) >= FRAME_BYTES:
            self._frames.append((item_id, bytes(held[:FRAME_BYTES]), float(FRAME_MS)))
            del held[:FRAME_BYTES]
        self._partial = (item_id, held) if held else None

    def clear(self) -> None:
        """Drop everything not yet sent."""
        self._frames.clear()
        self._partial = None

    def _flush_partial(self) -> None:
        if self._partial is None:
            return
        item_id, held = self._partial
        ms = len(held) / (RATE * 2 / 1000)
        self._frames.append((item_id, bytes(held) + bytes(FRAME_BYTES - len(held)), ms))
        self._partial = None

    async def recv(self) -> AudioFrame:
        """The next 20 ms: reply audio when queued, else silence; paced at real time."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        self._start = now if self._start is None else self._start
        wait = self._start + self._sent_samples / RATE - now
        if wait > 0:
            await asyncio.sleep(wait)
        if not self._frames and self._after_audio:
            self._flush_partial()  # the rest of a reply that ended between frames
        if self._frames:
            item_id, chunk, ms = self._frames.popleft()
            self._after_audio = True
            self._on_sent(item_id, ms)
        else:
            chunk = bytes(FRAME_BYTES)
            if self._after_audio:
                self._after_audio = False
                self._on_drained()
        samples = np.frombuffer(chunk, dtype="<i2")
        frame = AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent_samples
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent_samples += samples.size
        return frame


class CallDriver(SessionDriver):
    """One WebRTC call: the WebSocket path's driver with its audio on media tracks."""

    def __init__(
        self, call_id: str, events: CallEvents, pc: RTCPeerConnection, **driver: Any
    ) -> None:
        super().__init__(events, media=Media.WEBRTC, **driver)
        self.call_id = call_id
        self.events = events
        self.pc = pc
        self.track = ReplyTrack(self._sent, self._drained)
        self._listeners: set[asyncio.Task[None]] = set()

    def deliver(self, event: pydantic.BaseModel) -> list[Output]:
        """Reply audio goes on the track (never as events); the rest to the page and sidebands."""
        playout = self.core.playout
        assert playout is not None
        if isinstance(event, ResponseAudioDeltaEvent):
            pcm = codec.to_pcm16(
                base64.b64decode(event.delta), self.core.config.output_format, RATE
            )
            self.track.queue(event.item_id, pcm)
            ms = len(pcm) / (RATE * 2 / 1000)
            return list(playout.queued(event.response_id, event.item_id, event.content_index, ms))
        super().deliver(event)
        if isinstance(event, ResponseDoneEvent) and event.response.id:
            return list(playout.response_done(event.response.id))
        return []

    def cut_playout(self) -> list[Output]:
        """Empty the track's queue and truncate the reply to what went out."""
        self.track.clear()
        return self.core.playout_cut()

    def _sent(self, item_id: str, ms: float) -> None:
        assert self.core.playout is not None
        self.core.playout.sent(item_id, ms)

    def _drained(self) -> None:
        assert self.core.playout is not None
        self.emit(self.core.playout.drained())

    def hear(self, track: MediaStreamTrack) -> None:
        """Feed the caller's track into the session, as appends would."""
        task = asyncio.create_task(self._listen(track))
        self._listeners.add(task)
        task.add_done_callback(self._listeners.discard)

    async def _listen(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        with contextlib.suppress(MediaStreamError):
            while not self.events.closed:
                frame = await track.recv()
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    pcm = out.to_ndarray().astype("<i2").tobytes()
                    self._guarded(functools.partial(self.core.media_audio, pcm, self.now_ms()))

    async def end(self) -> None:
        """Tear the media down once the session has stopped."""
        for task in list(self._listeners):
            task.cancel()
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
