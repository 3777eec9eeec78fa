"""The realtime graph with the chained brain behind it: one call, two brains.

    transport.input -> [echo guard] -> FailoverBrain -> [tap] -> transport.output
        -> assistant aggregators
    FailoverBrain = realtime: user aggregator -> RealtimeService
                  | chained:  STT -> user aggregator (local VAD turns) -> LLM -> TTS

Both brains are built by their own builders, so each is the brain those
build alone; they are then put side by side in a
:class:`~voxpipe.processors.failover.FailoverBrain`, which starts on the
realtime one, moves the call to the chained one when the
:class:`~voxpipe.call.failover.FailoverPolicy` says so, and back when the
policy says the realtime brain is healthy again. The chained engines
load before the call starts, so a switch does not wait for a model. The
guardrail tap sits after the switch and serves either brain; on the chained
brain it sees the reply's text as it is spoken rather than before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loguru import logger
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from voxpipe.call.events import BrainSwitched
from voxpipe.call.failover import Brain, FailoverConfig
from voxpipe.errors import ConfigError
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS, build_chained_pipeline
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.processors.brain_switch import BrainSelector, BrainSwitch
from voxpipe.processors.failover import FailoverBrain, turns_of
from voxpipe.processors.observability.inline import ObservedPipeline
from voxpipe.processors.realtime import RealtimeService


def _session_voice(service: RealtimeService) -> str | None:
    """The voice the realtime session asks for (None: the provider's default)."""
    props = service.settings.session_properties  # type: ignore[attr-defined]
    output = props.audio.output if props.audio is not None else None
    return output.voice if output is not None else None


def _same_voice(voice: str | None, chained: dict[str, Any]) -> dict[str, Any]:
    """The chained builder's arguments, its OpenAI voice the realtime session's.

    OpenAI's speech service has every built-in Realtime voice, so a chained
    brain on OpenAI answers in the voice the caller was hearing; the local
    TTS speaks as the embedded server does (the same Piper voice by
    default). A custom Realtime voice has no twin there: the chained brain
    speaks in the speech service's default, and the log says so.
    """
    if voice is None or "openai_voice" in chained or "tts" in chained:
        return chained
    from voxpipe.processors.openai_http import speech_voice

    if not speech_voice(voice):
        logger.warning(
            f"the realtime voice {voice!r} is not one of OpenAI's speech voices: "
            "a chained brain on OpenAI would answer in its default voice"
        )
        return chained
    return {**chained, "openai_voice": voice}


def build_failover_pipeline(
    transport: BaseTransport,
    *,
    failover: FailoverConfig | None = None,
    instructions: str = DEFAULT_INSTRUCTIONS,
    tools: Sequence[Any] = (),
    functions: dict[str, Any] | None = None,
    tap: FrameProcessor | None = None,
    echo_guard: FrameProcessor | None = None,
    server_url: str | None = None,
    api_key: str | None = None,
    transcribe: bool = True,
    chained: dict[str, Any] | None = None,
    **realtime: Any,
) -> VoiceGraph:
    """Build the realtime graph with the chained brain as its fallback.

    Args:
        failover: what triggers a switch (default :class:`FailoverConfig`); its
            ``reconnects`` is the realtime brain's retry budget.
        instructions, tools, functions, tap, echo_guard: as for either graph.
        server_url, api_key, transcribe, **realtime: the realtime brain's
            (see :func:`~voxpipe.pipelines.realtime.build_realtime_pipeline`).
        chained: keyword arguments for the chained brain's builder (its
            engines: ``stt``, ``llm``, ``tts``, ``voice``, ``turn``).

    The graph's ``brain`` is the realtime service (the call's instruments
    follow it), ``services["failover"]`` the switch; ``graph.context`` is the
    context of the brain that has the call.
    """
    config = failover or FailoverConfig()
    if "backoff" in realtime:
        raise ConfigError(
            "a call with a fallback sets its realtime retry budget with FailoverConfig.reconnects"
        )
    # The policy detects hangs: the realtime brain's own stall timeout (a reconnect that
    # loses the answer) must not come first. At load 10 the embedded server's Whisper kept
    # a response silent past 8 s, and the call reconnected instead of switching.
    hang_ms = max(config.first_audio_deadline_ms, config.stall_ms) + 1_000
    realtime["stall_timeout_ms"] = max(realtime.get("stall_timeout_ms", 8_000), hang_ms)
    rt = build_realtime_pipeline(
        transport,
        instructions=instructions,
        tools=tools,
        functions=functions,
        server_url=server_url,
        api_key=api_key,
        transcribe=transcribe,
        backoff=config.backoff(),
        fallback=True,
        **realtime,
    )
    service = rt.brain
    assert isinstance(service, RealtimeService)
    ch = build_chained_pipeline(
        transport,
        instructions=instructions,
        tools=tools,
        functions=functions,
        **_same_voice(_session_voice(service), chained or {}),
    )
    selector = BrainSelector()
    brain = FailoverBrain(
        realtime=service,
        realtime_branch=_brain_part(rt),
        chained_branch=_brain_part(ch),
        selector=selector,
        config=config,
        now_ms=service.now_ms,
        chained_context=ch.context,
    )
    aggregators = BrainSwitch(
        {Brain.REALTIME: [rt.assistant_aggregator], Brain.CHAINED: [ch.assistant_aggregator]},
        selector,
        name="AssistantAggregators",
    )
    guard = [echo_guard] if echo_guard is not None else []
    taps = [tap] if tap is not None else []
    stages = [transport.input(), *guard, brain, *taps, transport.output(), aggregators]
    graph = VoiceGraph(
        pipeline=ObservedPipeline(stages),
        context=rt.context,
        transport=transport,
        user_aggregator=rt.user_aggregator,
        assistant_aggregator=rt.assistant_aggregator,
        brain=service,
        tap=tap,
        echo_guard=echo_guard,
        services={**ch.services, "realtime": service, "failover": brain},
        rate_limit_headers=ch.rate_limit_headers,
    )

    async def _on_switched(_brain: FailoverBrain, event: BrainSwitched) -> None:
        # The transcript follows the brain with the call.
        if event.current is Brain.CHAINED:
            graph.context = ch.context
        else:
            # Back on realtime: its context goes on from what was said on the chained brain
            # (words only: a chained tool call must not look like a result to send).
            heard = [
                {"role": t.role.value, "content": t.text}
                for t in turns_of(ch.context.get_messages())
            ]
            rt.context.set_messages(heard)  # type: ignore[arg-type]
            graph.context = rt.context

    brain.add_event_handler("on_brain_switched", _on_switched)
    return graph


def _brain_part(graph: VoiceGraph) -> list[FrameProcessor]:
    """What a built graph has between its transport's input and output: its brain's part."""
    processors = list(graph.pipeline.processors)
    start = processors.index(graph.transport.input()) + 1
    end = processors.index(graph.transport.output())
    return [p for p in processors[start:end] if p is not graph.echo_guard and p is not graph.tap]
