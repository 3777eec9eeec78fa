"""Helpers for the realtime service tests (no tests here).

A call is a real pipeline: the file transport plays a caller recording made of
real speech (local TTS), the realtime service talks to voxpipe's realtime
server over a loopback socket, and the bot's audio is written on the
transport's playback clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from pipecat.frames.frames import ErrorFrame, Frame, InterruptionFrame, TTSAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import CallEvent, RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

_KINDS = {
    TTSAudioRawFrame: "audio",
    InterruptionFrame: "interruption",
    PlaybackMarkerFrame: "marker",
}
API_KEY = "test-key"
RATE = 16_000
LONG_REPLY = (
    "Our pharmacy opens at nine in the morning on Saturday and closes at one in the "
    "afternoon, and on Sunday we are closed all day, but the pharmacy on Market Street "
    "stays open until six in the evening every single day of the week."
)


def compose(make_speech: Any, parts: Sequence[str | int], path: Path) -> list[tuple[int, int]]:
    """Write a caller recording: strings are spoken, ints are silences (ms).

    Returns each spoken line's (start_ms, end_ms) in the recording.
    """
    pieces: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for part in parts:
        if isinstance(part, int):
            audio = np.zeros(RATE * part // 1000, dtype=np.float32)
        else:
            spoken, _ = sf.read(str(make_speech(part, lead_ms=0, tail_ms=0)), dtype="float32")
            audio = np.asarray(spoken, dtype=np.float32)
            spans.append((at, at + len(audio) * 1000 // RATE))
        pieces.append(audio)
        at += len(audio) * 1000 // RATE
    sf.write(str(path), np.concatenate(pieces), RATE, subtype="PCM_16")
    return spans


class Recorder(BaseObserver):
    """Keeps the frames of interest that crossed the pipeline (first push only)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[ErrorFrame] = []
        # What the realtime service pushed downstream, in order: "audio",
        # "interruption", "marker" (an assistant item's first audio follows).
        self.service_pushes: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.first_push and isinstance(data.frame, ErrorFrame):
            self.errors.append(data.frame)
        if isinstance(data.source, RealtimeService) and data.direction is FrameDirection.DOWNSTREAM:
            kind = _KINDS.get(type(data.frame))
            if kind is not None:
                self.service_pushes.append(kind)

    def audio_after_interruption(self) -> int:
        """Audio frames the service pushed after an interruption, before the next item began."""
        count, cut = 0, False
        for kind in self.service_pushes:
            if kind == "interruption":
                cut = True
            elif kind == "marker":
                cut = False
            elif cut:
                count += 1
        return count


@dataclass
class Call:
    """A running call as a test sees it."""

    server: RunningServer
    transport: FileTransport
    graph: VoiceGraph
    service: RealtimeService
    events: list[CallEvent]
    recorder: Recorder
    session: CallSession

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 20.0, step_s: float = 0.05
    ) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                # Polled: the predicates read the transport and the state machine too.
                while not predicate():  # noqa: ASYNC110
                    await asyncio.sleep(step_s)
        except TimeoutError:
            for event in self.events:
                print(event)
            raise

    async def wait_event(self, kind: type[Any], count: int = 1, timeout_s: float = 20.0) -> None:
        await self.wait_for(lambda: len(self.of(kind)) >= count, timeout_s)

    async def input_done(self) -> None:
        await self.wait_for(lambda: self.transport.input_finished_ms is not None, 60.0)


@asynccontextmanager
async def realtime_call(
    recording: Path,
    *,
    script: Sequence[Any] = (LONG_REPLY,),
    config: ServerConfig | None = None,
    tap: Any = None,
    frames: list[Frame] | None = None,
    pace: float = 4.0,
    **build: Any,
) -> AsyncIterator[Call]:
    """Server + file transport + realtime graph, running; stopped on exit."""
    config = config or ServerConfig(api_key=API_KEY, fault_injection=True)
    brain = ScriptedBrain(list(script), pace=pace)
    async with running_realtime_server(config=config, brain=brain) as srv:
        transport = FileTransport(recording, paced=True)
        build.setdefault("api_key", API_KEY)
        graph = build_realtime_pipeline(transport, server_url=srv.realtime_url, tap=tap, **build)
        service = graph.brain
        assert isinstance(service, RealtimeService)
        events: list[CallEvent] = []

        @service.event_handler("on_call_event")
        async def _on_event(_s: RealtimeService, event: CallEvent) -> None:
            events.append(event)

        recorder = Recorder()
        session = CallSession(graph.pipeline, observers=[recorder], end_timeout_secs=5)
        async with session:
            yield Call(srv, transport, graph, service, events, recorder, session)
