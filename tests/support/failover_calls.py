"""Helpers for the failover tests: a cued caller, the failover graph, what crossed it (no tests).

The realtime side is voxpipe's server with fault injection and a scripted
brain that hears with the local Whisper (so the caller's words reach the
conversation record, and the chained brain, as they would from OpenAI); the
chained side is the local engines.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cued_caller import CuedCaller
from pipecat.frames.frames import Frame, LLMFullResponseStartFrame, TTSAudioRawFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.call.events import CallEvent
from voxpipe.call.failover import FailoverConfig
from voxpipe.call.state import CallState
from voxpipe.pipelines.failover import build_failover_pipeline
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.failover import FailoverBrain
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.realtime import RealtimeService
from voxpipe.realtime_server.effects import BrainOutput, BrainRequest
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

API_KEY = "test-key"
INSTRUCTIONS = "You are a phone assistant. Answer in one short sentence."


class HearingScriptedBrain(ScriptedBrain):
    """Says its script, and transcribes the caller with the local Whisper."""

    def __init__(self, stt: Any, script: Sequence[str], **kwargs: Any) -> None:
        super().__init__(list(script), **kwargs)
        self._stt = stt
        self.requests: list[BrainRequest] = []  # what each response was asked with
        self.turn_audio: list[tuple[bytes, int]] = []  # each committed turn's audio, its rate

    def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        self.requests.append(request)
        return super().respond(request)

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        self.turn_audio.append((pcm16, sample_rate))
        if self._stt is None:  # deaf: answers at once (a loaded machine's Whisper can take 15 s)
            return None
        text: str = await asyncio.to_thread(self._stt.transcribe, pcm16, sample_rate)
        return text.strip() or None


class Crossings(InlineObserver):
    """When each brain's reply audio and each chained reply began (first pushes only).

    Inline: each time is read in the push itself, not behind pipecat's observer
    queue, which lagged by hundreds of milliseconds at load 12.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (TTSAudioRawFrame, LLMFullResponseStartFrame)

    def __init__(self, now_ms: Callable[[], float]) -> None:
        super().__init__()
        self.now_ms = now_ms
        self.chained_voice: FrameProcessor | None = None  # the chained TTS, once built
        self.realtime_audio_ms: list[float] = []
        self.chained_audio_ms: list[float] = []
        self.chained_replies_ms: list[float] = []

    def observe(self, data: FramePushed, first: bool) -> None:
        if not first or data.direction is not FrameDirection.DOWNSTREAM:
            return
        frame, now = data.frame, self.now_ms()
        if isinstance(frame, TTSAudioRawFrame):
            if isinstance(data.source, RealtimeService):
                self.realtime_audio_ms.append(now)
            elif data.source is self.chained_voice:
                self.chained_audio_ms.append(now)
        elif isinstance(frame, LLMFullResponseStartFrame) and not isinstance(
            data.source, RealtimeService
        ):
            self.chained_replies_ms.append(now)


@dataclass
class FailoverCall:
    """A running call with a fallback, as a test sees it."""

    caller: CuedCaller
    graph: VoiceGraph
    brain: FailoverBrain
    service: RealtimeService
    crossings: Crossings
    server: RunningServer | None
    realtime_brain: HearingScriptedBrain | None = None
    events: list[CallEvent] = field(default_factory=list)
    session: CallSession | None = None

    def answers(self) -> list[str]:
        """The assistant's non-empty replies in the context of the brain with the call."""
        messages = self.graph.context.get_messages()
        texts = [str(m.get("content") or "") for m in messages if m.get("role") == "assistant"]
        return [t for t in texts if t.strip()]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():  # noqa: ASYNC110 - reads the graph and the events
                    await asyncio.sleep(0.05)
        except TimeoutError:
            for event in self.events:
                print(event)
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def closed_port_url() -> str:
    """A loopback Realtime URL nobody listens on: every connect is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v1/realtime"


@asynccontextmanager
async def failover_call(
    lines: Sequence[Path],
    engines: Any,
    *,
    script: Sequence[str] = ("Hello.",),
    failover: FailoverConfig | None = None,
    refused: bool = False,
    pace: float = 4.0,
    server_hears: bool = True,
    chained: dict[str, Any] | None = None,
    **realtime: Any,
) -> AsyncIterator[FailoverCall]:
    """Server (or a refused port) + cued caller + failover graph, running; stopped on exit.

    The caller's first line is said once a brain listens; each next one on ``call.caller.cue()``.
    ``server_hears=False``: the server's brain transcribes nothing and answers at once.
    ``chained``: the chained builder's arguments (default: the local engines, Piper);
    ``realtime``: more of the realtime builder's (``voice``...).
    """
    config = ServerConfig(api_key=API_KEY, fault_injection=True)
    brain = HearingScriptedBrain(engines.stt if server_hears else None, script, pace=pace)
    async with running_realtime_server(config=config, brain=brain) as srv:
        caller = CuedCaller(lines, wait_first=True)
        graph = build_failover_pipeline(
            caller,
            failover=failover,
            instructions=INSTRUCTIONS,
            server_url=closed_port_url() if refused else srv.realtime_url,
            api_key=API_KEY,
            chained={"voice": "piper"} if chained is None else chained,
            **realtime,
        )
        switch = graph.services["failover"]
        assert isinstance(switch, FailoverBrain)
        call = FailoverCall(
            caller, graph, switch, switch.realtime, Crossings(caller.clock.now_ms), srv, brain
        )

        async def _on_event(_s: RealtimeService, event: CallEvent) -> None:
            call.events.append(event)

        call.service.add_event_handler("on_call_event", _on_event)
        call.crossings.chained_voice = graph.services["tts"]
        async with CallSession(graph, observers=[call.crossings], end_timeout_secs=5) as session:
            call.session = session
            # The caller speaks once a brain listens: realtime ready, or the switch made.
            await call.until(
                lambda: (
                    call.service.machine.state is CallState.LISTENING or bool(call.brain.switched)
                ),
                60,
                "a brain to listen",
            )
            caller.cue()
            yield call
