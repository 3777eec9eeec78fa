"""The playback seam: a realtime graph truncates where its output says the caller stopped hearing.

- an output that reports nothing is refused with a ConfigError, unless the
  sent-position estimate is asked for explicitly;
- pipecat's own WebSocket server output, wrapped to report playback, carries a
  real call: a client on a real socket streams the caller's speech in real time
  and plays the bot's audio as it arrives; its barge-in is truncated where the
  output's reports put it, which is where the client had stopped hearing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import websockets
from pipecat.frames.frames import InputAudioRawFrame, InterruptionFrame, OutputAudioRawFrame
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from realtime_calls import API_KEY, LONG_REPLY, compose

from voxpipe.errors import ConfigError
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.playback import PlaybackLedger
from voxpipe.processors.realtime import ItemTruncated, RealtimeService
from voxpipe.transports.playback_reports import (
    ReportingWebsocketServerTransport,
    SentPlaybackEstimator,
)
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

RATE = 16_000
CHUNK_MS = 20
NOWHERE = "ws://127.0.0.1:9/v1/realtime"  # never dialled: the build fails or is not started


def _params() -> SingleClientWebsocketServerParams:
    return SingleClientWebsocketServerParams(
        audio_in_enabled=True,
        audio_in_sample_rate=RATE,
        audio_out_enabled=True,
        audio_out_sample_rate=24_000,
        serializer=ProtobufFrameSerializer(),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_an_output_that_does_not_report_playback_is_refused() -> None:
    transport = SingleClientWebsocketServerTransport(_params(), port=_free_port())
    with pytest.raises(ConfigError) as refused:
        build_realtime_pipeline(transport, server_url=NOWHERE, api_key=API_KEY)
    message = str(refused.value)
    assert "SingleClientWebsocketServerTransport" in message  # names the transport
    assert "does not report playback" in message
    assert "estimate_playback=True" in message and "ReportsPlayback" in message  # and the fixes


def test_the_sent_position_estimate_is_an_explicit_opt_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from loguru import logger

    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    try:
        transport = SingleClientWebsocketServerTransport(_params(), port=_free_port())
        graph = build_realtime_pipeline(
            transport, server_url=NOWHERE, api_key=API_KEY, estimate_playback=True
        )
    finally:
        logger.remove(sink)
    stages = graph.pipeline.processors
    estimator = next(i for i, p in enumerate(stages) if isinstance(p, SentPlaybackEstimator))
    assert stages[estimator + 1] is transport.output()  # right before the output
    assert any("sent position" in w for w in warnings)


class FarEnd:
    """A WebSocket client playing the caller: speaks a recording, plays the bot in real time."""

    def __init__(self, url: str, recording: Path) -> None:
        self.url = url
        audio, rate = sf.read(str(recording), dtype="int16")
        assert rate == RATE
        self.pcm = audio.tobytes()
        self.serializer = ProtobufFrameSerializer()
        self.first_audio_at: float | None = None  # monotonic ms
        self.received_ms = 0.0
        self.interrupted_at: float | None = None
        self.heard_at_interruption: float | None = None

    def heard_ms(self, at_ms: float) -> float:
        """What the far end had played by ``at_ms``: received audio, at real time."""
        if self.first_audio_at is None:
            return 0.0
        return min(self.received_ms, at_ms - self.first_audio_at)

    async def run(self) -> None:
        async with websockets.connect(self.url) as ws:
            talker = asyncio.create_task(self._talk(ws))
            try:
                async for message in ws:
                    self._hear(await self.serializer.deserialize(message))
            except websockets.ConnectionClosed:
                pass
            finally:
                talker.cancel()

    async def _talk(self, ws: Any) -> None:
        step = RATE * 2 * CHUNK_MS // 1000
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(self.pcm), step)):
            await asyncio.sleep(max(0.0, start + i * CHUNK_MS / 1000 - time.monotonic()))
            # The serializer speaks for the server: what it sends out is what we send in.
            frame = OutputAudioRawFrame(self.pcm[offset : offset + step], RATE, 1)
            await ws.send(await self.serializer.serialize(frame))
        silence = OutputAudioRawFrame(bytes(step), RATE, 1)
        while True:  # a live line keeps sending silence
            await asyncio.sleep(CHUNK_MS / 1000)
            await ws.send(await self.serializer.serialize(silence))

    def _hear(self, frame: Any) -> None:
        now = time.monotonic() * 1000
        if isinstance(frame, InterruptionFrame) and self.interrupted_at is None:
            if self.first_audio_at is not None:
                self.interrupted_at = now
                self.heard_at_interruption = self.heard_ms(now)
        elif isinstance(frame, OutputAudioRawFrame | InputAudioRawFrame) and frame.audio:
            if self.interrupted_at is not None:
                return
            if self.first_audio_at is None:
                self.first_audio_at = now
            self.received_ms += len(frame.audio) / 2 / frame.sample_rate * 1000


async def test_a_wrapped_pipecat_websocket_output_truncates_where_the_far_end_stopped(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [600, "What time do you open on Saturday?", 2800, "Sorry, one more thing.", 3000],
        recording,
    )
    port = _free_port()
    transport = ReportingWebsocketServerTransport(_params(), host="127.0.0.1", port=port)
    probe = PlaybackLedger()  # what the output reported, seen from outside the call
    transport.output().report_playback_to(probe)
    config = ServerConfig(api_key=API_KEY)
    async with running_realtime_server(
        config=config, brain=ScriptedBrain([LONG_REPLY, "Sure."])
    ) as srv:
        graph = build_realtime_pipeline(transport, server_url=srv.realtime_url, api_key=API_KEY)
        service = graph.brain
        assert isinstance(service, RealtimeService)
        truncated: list[ItemTruncated] = []

        @service.event_handler("on_call_event")
        async def _on_event(_s: Any, event: Any) -> None:
            if isinstance(event, ItemTruncated):
                truncated.append(event)

        far_end = FarEnd(f"ws://127.0.0.1:{port}", recording)
        async with CallSession(graph.pipeline, end_timeout_secs=5):
            client = asyncio.create_task(far_end.run())
            try:
                async with asyncio.timeout(40):
                    while not truncated or far_end.interrupted_at is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                client.cancel()

    cut = truncated[0]
    assert 300 < cut.audio_end_ms < cut.received_ms  # cut mid-answer
    # The truncate point is the position the output reported...
    assert abs(cut.audio_end_ms - probe.played_ms(cut.item_id, time.monotonic() * 1000)) <= 25
    # ...which is what the far end, playing what it got in real time, had heard
    # when the interruption reached it (the interruption's own trip adds a little).
    assert far_end.heard_at_interruption is not None
    print(
        f"\nfar end heard {far_end.heard_at_interruption:.0f} ms, truncated at {cut.audio_end_ms}"
    )
    assert -20 <= far_end.heard_at_interruption - cut.audio_end_ms <= 100, (
        far_end.heard_at_interruption,
        cut,
    )
