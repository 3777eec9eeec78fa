"""A live call: the agent's graph on a live transport, run until the caller goes.

The engine behind ``voxpipe serve``: one :class:`LiveCall` per caller (a
browser's peer connection). It builds the same graph as ``voxpipe call``
(realtime or chained, guardrails, instruments), runs it until the caller hangs
up, the peer dies (its transport's liveness says so: nothing heard for 5 s, or
never connected), the call reaches ``max_secs``, or the server ends it;
then, with ``record_dir``, writes the same artifacts as ``voxpipe call`` into
``record_dir/<call-id>/``: ``call.wav`` (caller left, bot right),
``transcript.json``, ``timeline.jsonl``, ``report.json`` and ``report.html``.

A live caller may be on a speakerphone without echo cancellation, so a live
call has an echo guard by default (``LiveCallSpec.echo_guard``; None turns it
off): caller audio that is only the bot's own voice coming back is silence to
turn detection, and the bot no longer interrupts itself. Phone routes pass
their own spec without it unless their config asks (``PhoneConfig.echo_guard``):
the phone network cancels echo, and on an echo-free line the guard's prior
would clip callers who speak soon after the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from pipecat.observers.base_observer import BaseObserver
from pipecat.processors.frame_processor import FrameProcessor

from voxpipe.agents import AgentsConfig
from voxpipe.call.failover import FailoverConfig
from voxpipe.delegation import DelegationSettings
from voxpipe.echo import EchoGuardConfig
from voxpipe.observability.capture import CaptureLog
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.session import CallSession
from voxpipe.pipelines.simulated_call import Mode, build_call_graph, write_outputs
from voxpipe.processors.echo_guard import EchoGuardProcessor
from voxpipe.processors.observability import instrument
from voxpipe.processors.observability.report import report_call
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.slot_config import ChainedSlots
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.recording import CallRecording
from voxpipe.webrtc.liveness import Dead, DeadReason, PeerLiveness

WATCH_S = 0.25


class CallEnd(enum.Enum):
    """Why a live call ended."""

    HUNG_UP = "hung_up"  # the caller closed the connection
    PEER_SILENT = (
        "peer_silent"  # nothing heard from the caller for too long (tab killed, network gone)
    )
    NEVER_CONNECTED = "never_connected"
    PIPELINE_ENDED = "pipeline_ended"  # the call ended itself (a fatal provider error, say)
    MAX_DURATION = "max_duration"
    SERVER_ENDED = "server_ended"  # the server shut down or ended it


_PEER_GONE = {
    DeadReason.NEVER_CONNECTED: CallEnd.NEVER_CONNECTED,
    DeadReason.SILENT: CallEnd.PEER_SILENT,
    DeadReason.CLOSED: CallEnd.HUNG_UP,
}


class LiveTransport(Protocol):
    """What a live call needs of its transport besides pipecat's ``BaseTransport``."""

    recording: CallRecording
    liveness: PeerLiveness
    now_ms: Callable[[], float]

    def input(self) -> FrameProcessor: ...

    def output(self) -> FrameProcessor: ...

    @property
    def captures(self) -> CaptureLog: ...

    def first_played_ms(self, since_ms: float) -> float | None: ...


@dataclass
class LiveCallSpec:
    """The agent every live call of a server runs, and how calls end."""

    mode: Mode = Mode.REALTIME
    instructions: str = DEFAULT_INSTRUCTIONS
    tools: Sequence[Any] = ()
    server_url: str | None = None
    api_key: str | None = None
    make_tap: Callable[[], FrameProcessor | None] = lambda: None  # one tap per call
    record_dir: Path | None = None
    metrics: VoxpipeMetrics | None = None
    max_secs: float | None = None
    # The bot's voice picked up by the caller's microphone is not a barge-in (None: no guard).
    echo_guard: EchoGuardConfig | None = field(default_factory=EchoGuardConfig)
    # Realtime mode: the chained brain takes the call if the realtime one fails.
    fallback: FailoverConfig | None = None
    # The chained brain's engines per slot, in order ([chained] in agent.toml).
    slots: ChainedSlots | None = None
    # [delegate]: the voice model hands hard turns to a backend, a filler covering the wait.
    delegate: DelegationSettings | None = None
    # start + [agents.<name>]: the start agent takes each call, transfer tools hand it on.
    agents: AgentsConfig | None = None


class LiveCall:
    """One caller's call, from its connection to its artifacts."""

    def __init__(
        self,
        call_id: str,
        transport: LiveTransport,
        spec: LiveCallSpec,
        *,
        observers: Sequence[BaseObserver] = (),
    ) -> None:
        self.call_id = call_id
        self.observers = list(observers)
        self.transport = transport
        self.spec = spec
        self.timeline = Timeline()
        self.echo_guard = (
            EchoGuardProcessor(transport.output(), spec.echo_guard)
            if spec.echo_guard is not None
            else None
        )
        self.graph: VoiceGraph = build_call_graph(
            transport,  # type: ignore[arg-type]
            spec.mode,
            instructions=spec.instructions,
            tools=spec.tools,
            tap=spec.make_tap(),
            server_url=spec.server_url,
            api_key=spec.api_key,
            echo_guard=self.echo_guard,
            fallback=spec.fallback,
            slots=spec.slots,
            delegate=spec.delegate,
            agents=spec.agents,
        )
        self.instruments = instrument(
            transport.now_ms,
            brain=self.graph.brain,
            output=transport.output(),
            input=transport.input(),
            timeline=self.timeline,
            capture=transport,  # type: ignore[arg-type]
            playback=transport,  # type: ignore[arg-type]
            metrics=spec.metrics,
        )
        self.ended: CallEnd | None = None
        self._end = asyncio.Event()
        self._hung_up = False

    @property
    def out_dir(self) -> Path | None:
        """Where the call's artifacts go (None: not recorded)."""
        return None if self.spec.record_dir is None else self.spec.record_dir / self.call_id

    def transport_rejoined(self, rejoins: int) -> None:
        """The caller's transport was replaced mid-call: one blip, the same call."""
        self.timeline.add(self.transport.now_ms(), EventKind.TRANSPORT_REJOINED, rejoins=rejoins)

    def hang_up(self) -> None:
        """The caller closed the connection."""
        self._hung_up = True
        self._end.set()

    def end(self) -> None:
        """End the call now (the server is shutting down, or an operator asked)."""
        self._end.set()

    async def run(self) -> CallEnd:
        """Run the call to its end; write its artifacts when recording."""
        now = self.transport.now_ms
        observers = [
            TimelineObserver(self.timeline, now),
            *self.instruments.observers,
            *self.observers,
        ]
        self.timeline.add(now(), EventKind.CALL_STARTED, mode=self.spec.mode.value)
        async with CallSession(self.graph, observers=observers, end_timeout_secs=2) as session:
            self.ended = await self._until_over(session)
            if self.ended is not CallEnd.PIPELINE_ENDED:
                await session.cancel()  # a gone peer cannot be played out to
        self.timeline.add(now(), EventKind.CALL_ENDED, reason=self.ended.value)
        logger.info(f"call {self.call_id} ended: {self.ended.value}")
        self.instruments.finish()
        # Writing WAVs and reports takes seconds; other calls on this server must not stall.
        await asyncio.to_thread(self._write_artifacts)
        return self.ended

    async def _until_over(self, session: CallSession) -> CallEnd:
        started = self.transport.now_ms()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._end.wait(), WATCH_S)
            if self._end.is_set():
                return CallEnd.HUNG_UP if self._hung_up else CallEnd.SERVER_ENDED
            if session.finished:
                return CallEnd.PIPELINE_ENDED
            now = self.transport.now_ms()
            verdict = self.transport.liveness.verdict(now)
            if isinstance(verdict, Dead):
                return _PEER_GONE[verdict.reason]
            if self.spec.max_secs is not None and now - started > self.spec.max_secs * 1000:
                return CallEnd.MAX_DURATION

    def _write_artifacts(self) -> None:
        out_dir = self.out_dir
        if out_dir is None:
            return
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_outputs(out_dir, self.transport.recording, self.timeline, self.graph)
            report_call(out_dir, self.instruments)
        except OSError as exc:  # a full disk must not take the server down
            logger.error(f"call {self.call_id}: could not write its artifacts to {out_dir}: {exc}")
