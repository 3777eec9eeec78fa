"""A whole call simulated from a recording: the engine behind ``voxpipe call`` and the demo.

The caller's recording is played in real time through the file transport into
the graph of the chosen mode; the call ends once the recording is over and
the bot has been quiet for ``quiet_secs`` (see
:meth:`~voxpipe.pipelines.session.CallSession.run_until_input_ends`). Outputs:
``call.wav`` (caller left, bot right), ``transcript.json``, ``timeline.jsonl``
(with each turn's latency boundaries) and the call report, ``report.json`` and
``report.html``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipecat.observers.base_observer import BaseObserver
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from voxpipe.agents import AgentsConfig, AgentsConfigError, AgentsProblem, BrainPath
from voxpipe.call.failover import FailoverConfig
from voxpipe.delegation import DelegationSettings, check_delegation
from voxpipe.errors import ConfigError
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS, build_chained_pipeline
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import Instruments
from voxpipe.processors.observability.report import ReportFiles, instrument_call, report_call
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.slot_config import ChainedSlots
from voxpipe.timeline import EventKind, Timeline, Turn
from voxpipe.transports.file import FileTransport


class Mode(enum.Enum):
    REALTIME = "realtime"
    CHAINED = "chained"


@dataclass(frozen=True)
class RealtimeLimits:
    """How long a realtime brain may think, or go silent mid-response, before the call
    gives up on it (the defaults suit OpenAI; the local engines on a busy machine
    take longer to a first word)."""

    thinking_ms: int
    silent_ms: int

    def pipeline_kwargs(self) -> dict[str, Any]:
        """``build_realtime_pipeline``'s arguments for these limits."""
        from voxpipe.call.state import StateTimeouts

        return {
            "stall_timeout_ms": self.silent_ms,
            "timeouts": dataclasses.replace(StateTimeouts(), thinking_ms=self.thinking_ms),
        }


@dataclass
class CallSpec:
    """What to simulate and where to write it."""

    input_path: Path
    out_dir: Path
    mode: Mode = Mode.CHAINED
    instructions: str = DEFAULT_INSTRUCTIONS
    tools: Sequence[Any] = ()
    quiet_secs: float = 2.5
    answer_timeout_secs: float = 30.0
    max_secs: float = 300.0
    graph_factory: Callable[[FileTransport, CallSpec], VoiceGraph] | None = None
    extra_observers: list[BaseObserver] = field(default_factory=list)
    # Realtime mode: the endpoint and key (None and no OPENAI_API_KEY: an
    # in-process voxpipe realtime-server answering with ``server_brain``).
    server_url: str | None = None
    api_key: str | None = None
    server_brain: Any = None
    tap: Any = None
    # Chained mode: the engines of each slot in order ([chained] in agent.toml).
    slots: ChainedSlots | None = None
    # Realtime mode: the chained brain takes the call if the realtime one fails.
    fallback: FailoverConfig | None = None
    # The process's Prometheus metrics, if it exports them (``voxpipe call --metrics-port``).
    metrics: VoxpipeMetrics | None = None
    # [delegate]: the voice model hands hard turns to a backend, a filler covering the wait.
    delegate: DelegationSettings | None = None
    # start + [agents.<name>]: the start agent takes the call, transfer tools hand it on.
    agents: AgentsConfig | None = None


@dataclass
class CallResult:
    timeline: Timeline
    turns: list[Turn]
    out_dir: Path
    graph: VoiceGraph
    instruments: Instruments | None = None
    report: ReportFiles | None = None


def build_call_graph(
    transport: BaseTransport,
    mode: Mode,
    *,
    instructions: str = DEFAULT_INSTRUCTIONS,
    tools: Sequence[Any] = (),
    tap: Any = None,
    server_url: str | None = None,
    api_key: str | None = None,
    echo_guard: FrameProcessor | None = None,
    slots: ChainedSlots | None = None,
    fallback: FailoverConfig | None = None,
    delegate: DelegationSettings | None = None,
    agents: AgentsConfig | None = None,
    realtime_limits: RealtimeLimits | None = None,
) -> VoiceGraph:
    """The graph of one call in ``mode``, the same for a recording and a live caller.

    ``echo_guard`` goes right after the transport's input (a live caller's
    speakerphone; see :class:`~voxpipe.processors.echo_guard.EchoGuardProcessor`).
    ``slots`` are the chained slots' engines in order, with fallback between them.
    ``fallback``: a realtime call moves to the chained brain when the realtime one
    fails (:func:`~voxpipe.pipelines.failover.build_failover_pipeline`).
    ``delegate``: the voice model delegates hard turns to a backend
    (:mod:`voxpipe.delegation`); a mode or combination that would not is a
    ``DelegationConfigError`` here, before anything runs.
    ``agents``: a multi-agent call (``start`` + ``[agents.<name>]``); the start
    agent's instructions replace ``instructions``. Not beside a fallback brain,
    which would answer as no agent (an ``AgentsConfigError``).
    ``realtime_limits``: how long the realtime brain may think or send nothing
    (a slow brain on purpose, such as the local engines on a busy machine).
    """
    check_delegation(
        delegate,
        "<delegate>",
        BrainPath(mode.value),
        llm_slots=slots is not None and slots.llm is not None,
        fallback=fallback is not None,
        openai_key=True,  # the chained builder checks the key it resolves
    )
    if fallback is not None and agents is not None:
        raise AgentsConfigError(
            AgentsProblem.CANNOT_COMBINE,
            agents.source,
            "[agents]",
            "cannot be combined with a fallback brain: the chained brain taking over a "
            "failed realtime call would answer as no agent",
        )
    if fallback is not None:
        return _failover_graph(
            transport,
            mode,
            fallback,
            instructions,
            tools,
            tap,
            server_url,
            api_key,
            echo_guard,
            slots,
        )
    if mode is Mode.CHAINED:
        return build_chained_pipeline(
            transport,
            instructions=instructions,
            tools=tools,
            tap=tap,
            echo_guard=echo_guard,
            slots=slots,
            delegate=delegate,
            agents=agents,
        )
    from voxpipe.pipelines.realtime import build_realtime_pipeline
    from voxpipe.processors.guardrails.realtime import RealtimeSafeLine
    from voxpipe.processors.guardrails.tap import GuardrailTap

    graph = build_realtime_pipeline(
        transport,
        instructions=instructions,
        tools=tools,
        tap=tap,
        echo_guard=echo_guard,
        server_url=server_url,
        api_key=api_key,
        transcribe=True,  # transcript.json shows what the caller said
        delegate=delegate,
        agents=agents,
        **(realtime_limits.pipeline_kwargs() if realtime_limits is not None else {}),
    )
    if isinstance(tap, GuardrailTap):
        # On the realtime path the brain itself says the safe line.
        tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))  # type: ignore[arg-type]
    return graph


def _failover_graph(
    transport: BaseTransport,
    mode: Mode,
    fallback: FailoverConfig,
    instructions: str,
    tools: Sequence[Any],
    tap: Any,
    server_url: str | None,
    api_key: str | None,
    echo_guard: FrameProcessor | None,
    slots: ChainedSlots | None,
) -> VoiceGraph:
    if mode is not Mode.REALTIME:
        raise ConfigError(
            "a fallback brain backs the realtime brain; a chained call has none",
            hint="use --mode realtime with --fallback chained",
        )
    from voxpipe.pipelines.failover import build_failover_pipeline
    from voxpipe.processors.guardrails.realtime import RealtimeSafeLine
    from voxpipe.processors.guardrails.tap import GuardrailTap

    graph = build_failover_pipeline(
        transport,
        failover=fallback,
        instructions=instructions,
        tools=tools,
        tap=tap,
        echo_guard=echo_guard,
        server_url=server_url,
        api_key=api_key,
        chained={"slots": slots} if slots is not None else None,
    )
    if isinstance(tap, GuardrailTap):
        # The realtime brain says the safe line; once the chained brain has the call,
        # the tap's trip still cuts the reply, and the chained brain speaks no line.
        tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))  # type: ignore[arg-type]
    return graph


def _spec_graph(transport: FileTransport, spec: CallSpec) -> VoiceGraph:
    return build_call_graph(
        transport,
        spec.mode,
        instructions=spec.instructions,
        tools=spec.tools,
        tap=spec.tap,
        server_url=spec.server_url,
        api_key=spec.api_key,
        slots=spec.slots,
        fallback=spec.fallback,
        delegate=spec.delegate,
        agents=spec.agents,
    )


LOCAL_SERVER_KEY = "voxpipe-local"


@contextlib.asynccontextmanager
async def embedded_realtime(
    mode: Mode, server_url: str | None, api_key: str | None, brain: Any
) -> AsyncIterator[tuple[str | None, str | None]]:
    """The realtime endpoint and key to use: as given, or an in-process server.

    Realtime mode with no URL, no key and no ``OPENAI_API_KEY`` runs on the
    embedded default: an in-process ``voxpipe realtime-server`` answering with
    ``brain``, for as long as the context lasts.
    """
    if mode is not Mode.REALTIME or server_url or api_key or os.environ.get("OPENAI_API_KEY"):
        yield server_url, api_key
        return
    from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server

    config = ServerConfig(api_key=LOCAL_SERVER_KEY)
    async with running_realtime_server(config=config, brain=brain) as server:
        yield server.realtime_url, LOCAL_SERVER_KEY


@contextlib.asynccontextmanager
async def _endpoint(spec: CallSpec) -> AsyncIterator[CallSpec]:
    """The spec itself, or (realtime, no URL, no key) one pointing at an in-process server."""
    async with embedded_realtime(spec.mode, spec.server_url, spec.api_key, spec.server_brain) as (
        url,
        key,
    ):
        yield dataclasses.replace(spec, server_url=url, api_key=key)


async def simulate_call(spec: CallSpec) -> CallResult:
    """Run the call; see the module docstring."""
    try:
        spec.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{spec.out_dir}: cannot create the output directory ({exc})") from exc
    async with _endpoint(spec) as resolved:
        return await _simulate(resolved)


async def _simulate(spec: CallSpec) -> CallResult:
    transport = FileTransport(spec.input_path, paced=True)
    factory = spec.graph_factory or _graph_for(spec.mode)
    graph = factory(transport, spec)
    timeline = Timeline()
    instruments = attach_instruments(spec, transport, graph, timeline)
    observers = [
        TimelineObserver(timeline, transport.clock.now_ms),
        *spec.extra_observers,
        *instruments.observers,
    ]
    timeline.add(transport.clock.now_ms(), EventKind.CALL_STARTED, mode=spec.mode.value)
    async with CallSession(graph, observers=observers) as call:
        await call.run_until_input_ends(
            quiet_secs=spec.quiet_secs,
            answer_timeout_secs=spec.answer_timeout_secs,
            max_secs=spec.max_secs,
        )
    _note_fatal_error(timeline, graph, transport.clock.now_ms())
    timeline.add(transport.clock.now_ms(), EventKind.CALL_ENDED)
    instruments.finish()  # the last turn's latency lands in the timeline before it is written
    write_outputs(spec.out_dir, transport, timeline, graph)
    report = report_call(spec.out_dir, instruments)
    return CallResult(timeline, timeline.turns(), spec.out_dir, graph, instruments, report)


def attach_instruments(
    spec: CallSpec, transport: FileTransport, graph: VoiceGraph, timeline: Timeline
) -> Instruments:
    """The call's latency, cost and rate-limit instruments, writing into ``timeline``."""
    return instrument_call(transport, graph, timeline, metrics=spec.metrics)


def _graph_for(mode: Mode) -> Callable[[FileTransport, CallSpec], VoiceGraph]:
    if mode in (Mode.CHAINED, Mode.REALTIME):
        return _spec_graph
    raise ConfigError(f"mode {mode.value} needs a graph factory")


class CallAudio(Protocol):
    """Whatever holds both sides of a call's audio (a file transport, a live call's recording)."""

    def write_call_wav(self, path: Path) -> None: ...


def _note_fatal_error(timeline: Timeline, graph: VoiceGraph, now_ms: float) -> None:
    """The brain's reason for giving up, if the timeline missed it.

    The service pushes it as an ErrorFrame and then cancels the worker; on a
    loaded machine the cancel can end the pipeline before the frame is observed,
    and the call then looked like one that merely had no turns.
    """
    error = getattr(graph.services.get("realtime"), "fatal_error", None)
    if error is None or any(e.data.get("fatal") for e in timeline.of(EventKind.ERROR)):
        return
    timeline.add(now_ms, EventKind.ERROR, error=str(error), fatal=True)


def write_outputs(out_dir: Path, audio: CallAudio, timeline: Timeline, graph: VoiceGraph) -> None:
    """``call.wav``, ``timeline.jsonl`` and ``transcript.json`` of one call, into ``out_dir``."""
    audio.write_call_wav(out_dir / "call.wav")
    (out_dir / "timeline.jsonl").write_text(timeline.jsonl())
    turns = [
        {
            "heard": t.heard,
            "replied": t.replied,
            "latency_ms": None if t.latency_ms is None else round(t.latency_ms),
            "interrupted": t.interrupted,
        }
        for t in timeline.turns()
    ]
    transcript = {"turns": turns, "messages": graph.context.get_messages()}
    (out_dir / "transcript.json").write_text(json.dumps(transcript, indent=2, default=str) + "\n")
