"""Helpers shared by the realtime server tests (no tests here).

Speech comes from the local TTS via the ``make_speech`` fixture; a raw
aiohttp client stands in for misbehaving clients the SDK would never let us be.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from pipecat.frames.frames import ErrorFrame, Frame, InputAudioRawFrame, TTSTextFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.pipelines.session import CallSession
from voxpipe.transports.realtime_server import RunningServer

API_KEY = "test-key"
PCM_CHUNK = 4800  # 100 ms of 24 kHz PCM16


def read_pcm16(path: Path) -> bytes:
    """A WAV written by ``make_speech`` as raw PCM16 bytes."""
    data, _ = sf.read(str(path), dtype="int16")
    return np.asarray(data, dtype="<i2").tobytes()


def silence(ms: int, rate: int = 24_000) -> bytes:
    """``ms`` of digital silence as PCM16."""
    return bytes(2 * rate * ms // 1000)


def noise(ms: int, rate: int = 24_000, level: float = 300.0, seed: int = 7) -> bytes:
    """``ms`` of low white noise (no speech) as PCM16."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, level, rate * ms // 1000)).astype("<i2").tobytes()


def chunks(pcm: bytes, size: int = PCM_CHUNK) -> list[bytes]:
    """``pcm`` cut into append-sized pieces."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


class RawClient:
    """A bare WebSocket client: sends any text and reads events as dicts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send_str(event if isinstance(event, str) else json.dumps(event))

    async def append(self, pcm: bytes, *, paced: bool = False) -> None:
        """Append 24 kHz PCM16; ``paced`` sends it in real time, as a live caller would."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent_ms = 0.0
        for piece in chunks(pcm):
            await self.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}
            )
            sent_ms += len(piece) / 48
            if paced:
                await asyncio.sleep(max(0.0, started + sent_ms / 1000 - loop.time()))

    async def next(self, wait_s: float = 10.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.receive(), wait_s)
        if message.type is aiohttp.WSMsgType.CLOSE:
            self.close_code = int(message.data)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {message.type} {message.data!r}")
        event: dict[str, Any] = json.loads(message.data)
        self.seen.append(event)
        return event

    async def until(self, event_type: str, wait_s: float = 10.0) -> dict[str, Any]:
        """Read events until one of ``event_type`` arrives; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            event = await self.next(max(0.01, deadline - loop.time()))
            if event["type"] == event_type:
                return event

    async def push_to_talk(self) -> None:
        """Turn server VAD off (manual commits)."""
        await self.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
            }
        )
        await self.until("session.updated")

    def types(self) -> list[str]:
        return [e["type"] for e in self.seen]


@asynccontextmanager
async def raw_client(
    server: RunningServer, *, token: str = API_KEY, model: str = "gpt-realtime"
) -> AsyncIterator[RawClient]:
    """A connected raw client that has already read ``session.created``."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{server.realtime_url}?model={model}",
            headers={"Authorization": f"Bearer {token}"},
            max_msg_size=0,
        ) as ws,
    ):
        client = RawClient(ws)
        created = await client.next()
        assert created["type"] == "session.created"
        yield client


class ServiceOutput(BaseObserver):
    """What one pipecat service pushed (downstream frames, errors either way)."""

    def __init__(self, service: FrameProcessor) -> None:
        super().__init__()
        self._service = service
        self.down: list[Frame] = []
        self.errors: list[ErrorFrame] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is not self._service:
            return
        if isinstance(data.frame, ErrorFrame):
            self.errors.append(data.frame)
        elif data.direction is FrameDirection.DOWNSTREAM:
            self.down.append(data.frame)

    def count(self, kind: type[Frame]) -> int:
        return sum(isinstance(frame, kind) for frame in self.down)

    def said(self) -> str:
        """The assistant's words as the service pushed them."""
        return "".join(f.text for f in self.down if isinstance(f, TTSTextFrame))

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Wait for what the service pushed to satisfy ``predicate``, not for a fixed time."""
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls the frames recorded above
                await asyncio.sleep(0.02)


@asynccontextmanager
async def pipecat_realtime(url: str) -> AsyncIterator[tuple[CallSession, ServiceOutput]]:
    """pipecat's own ``OpenAIRealtimeLLMService`` against ``url``, running, its output watched.

    The service connects while it is set up, so once this yields its socket is open.
    """
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    service = OpenAIRealtimeLLMService(api_key=API_KEY, base_url=url)
    output = ServiceOutput(service)
    session = CallSession(
        Pipeline([service]), observers=[output], in_sample_rate=24_000, out_sample_rate=24_000
    )
    async with session:
        yield session, output


async def send_audio(call: CallSession, pcm: bytes) -> None:
    """Queue 24 kHz PCM16 as 20 ms caller frames, as fast as the pipeline takes them."""
    for i in range(0, len(pcm), 960):
        await call.queue(InputAudioRawFrame(pcm[i : i + 960], 24_000, 1))
