"""The realtime path: transport in -> user aggregator -> speech-to-speech -> [tap] -> out.

The brain is :class:`~voxpipe.processors.realtime.RealtimeService`, talking
the OpenAI Realtime protocol to OpenAI (``OPENAI_API_KEY``) or to voxpipe's
own server (``server_url``, e.g. an in-process ``voxpipe realtime-server``).
Turns are detected by the server's VAD; the aggregators keep the context.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.processors.aggregators.llm_context import NOT_GIVEN, LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.openai.realtime import events as rt
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies

from voxpipe.agents import AgentsConfig, BrainPath
from voxpipe.audio import AudioFormat
from voxpipe.call import BackoffConfig, CallConfig, RolloverConfig, StateTimeouts, TurnDetection
from voxpipe.call.tokens import key_for_endpoint
from voxpipe.delegation import DelegationSettings, check_delegation
from voxpipe.errors import ConfigError
from voxpipe.pipelines.agents import plan_agents
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS, TurnSettings
from voxpipe.pipelines.graph import VoiceGraph, assemble
from voxpipe.playback import PlaybackLedger, PlaybackReporter
from voxpipe.processors.idempotent_tools import IdempotentTools
from voxpipe.processors.realtime import RealtimeService
from voxpipe.processors.realtime.agents import AgentsRealtimeService
from voxpipe.processors.realtime.formats import passthrough_format, session_format
from voxpipe.transports.playback_reports import SentPlaybackEstimator
from voxpipe.transports.tokens import (
    EphemeralTokenProvider,
    NoKeyProvider,
    StaticKeyProvider,
    TokenProvider,
)

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"
SERVER_VAD_SILENCE_MS = 500
# A delegated turn waits on the backend in the tool-call state: the local LLM took up to
# 42.6 s on a loaded 2-core machine (benchmarks/delegation.py), past the default 30 s.
DELEGATE_CALLING_TOOL_MS = 120_000
STRICT_ENV = "VOXPIPE_STRICT_STATES"  # "1": an illegal call state transition ends the call


def realtime_session(
    instructions: str,
    *,
    transcribe: bool = False,
    server_vad: bool = True,
    audio_format: AudioFormat = AudioFormat.PCM16_24K,
    voice: str | None = None,
) -> rt.SessionProperties:
    """Session properties for a phone-style call: audio out, server VAD turns (or none).

    ``voice``: the provider's voice for the whole session (its default when None).
    """
    turn_detection: rt.TurnDetection | bool = (
        rt.TurnDetection(type="server_vad", silence_duration_ms=SERVER_VAD_SILENCE_MS)
        if server_vad
        else False
    )
    # PCM16 at 24 kHz is the session's default; G.711 is asked for (a phone stream's).
    fmt = session_format(audio_format) if audio_format is not AudioFormat.PCM16_24K else None
    audio_input = rt.AudioInput(
        format=fmt,
        transcription=rt.InputAudioTranscription() if transcribe else None,
        turn_detection=turn_detection,
    )
    output = rt.AudioOutput(format=fmt, voice=voice) if fmt or voice else None
    return rt.SessionProperties(
        instructions=instructions,
        output_modalities=["audio"],
        audio=rt.AudioConfiguration(input=audio_input, output=output),
    )


def _one_voice(given: str | None, agents: str | None) -> str | None:
    """The call's voice: the one given, or the agents' (a ``ConfigError`` if they differ)."""
    if given is not None and agents is not None and given != agents:
        raise ConfigError(
            f"voice={given!r} but the agents speak in {agents!r}; a realtime call has one voice",
            hint="drop one of them",
        )
    return given or agents


def build_realtime_pipeline(
    transport: BaseTransport,
    *,
    instructions: str = DEFAULT_INSTRUCTIONS,
    tools: Sequence[Any] = (),
    functions: dict[str, Any] | None = None,
    tap: FrameProcessor | None = None,
    echo_guard: FrameProcessor | None = None,
    server_url: str | None = None,
    api_key: str | None = None,
    token_provider: TokenProvider | None = None,
    estimate_playback: bool = False,
    model: str = DEFAULT_MODEL,
    voice: str | None = None,
    transcribe: bool = False,
    rollover: RolloverConfig | None = None,
    backoff: BackoffConfig | None = None,
    timeouts: StateTimeouts | None = None,
    stall_timeout_ms: int = 8_000,
    ephemeral_ttl_s: int | None = None,
    local_turns: TurnSettings | None = None,
    brain: Callable[..., FrameProcessor] | None = None,
    strict_states: bool | None = None,
    fallback: bool = False,
    agents: AgentsConfig | None = None,
    delegate: DelegationSettings | None = None,
    delegate_backend: Any = None,
) -> VoiceGraph:
    """Build the realtime graph around ``transport``.

    Args:
        instructions: the system prompt.
        tools: direct functions, or ``FunctionSchema`` objects (handlers on the
            schema or in ``functions``, by name).
        tap: a processor after the brain (a guardrail); its
            ``broadcast_interruption()`` cancels and truncates the response.
        echo_guard: a processor right after the transport's input, before the
            audio reaches the server's VAD (or the local one): the
            :class:`~voxpipe.processors.echo_guard.EchoGuardProcessor`.
        server_url: the Realtime endpoint (``ws://127.0.0.1:8765/v1/realtime``);
            default OpenAI's when a key is set.
        api_key: the long-lived key for ``server_url``; used as is, or to mint
            ephemeral secrets. ``OPENAI_API_KEY`` is used only for OpenAI's own
            host (``wss://api.openai.com``); no key ever goes over plain
            ``ws://`` to another machine (a ``ConfigError``). With
            ``ephemeral_ttl_s``, secrets of that many seconds are minted from the
            server's ``/v1/realtime/client_secrets`` (rotated in the background).
        token_provider: a provider of your own instead (its events are yours).
        estimate_playback: the output transport does not report playback (it is
            no :class:`~voxpipe.playback.PlaybackReporter`): count audio as heard
            when it is pushed to the output instead. An estimate, logged as one;
            without it such a transport is refused with a ``ConfigError``.
        voice: the session's voice (``marin``, ``alloy``... or a custom voice's
            id); the provider's default when None, or the agents' one voice
            (``[agents.<name>].voice``). A call with a fallback gives it to the
            chained brain's OpenAI voice too.
        transcribe: ask the server to transcribe the caller's audio.
        local_turns: detect turns locally (Silero VAD in the user aggregator)
            instead of with the server's VAD; a local barge-in then cancels.
        rollover, backoff, timeouts, stall_timeout_ms: see
            :class:`~voxpipe.processors.realtime.RealtimeService`.
        brain: build a different service for the BRAIN slot from the same
            keyword arguments as pipecat's (a benchmark baseline).
        strict_states: an illegal call state transition ends the call instead of
            being logged (default: the ``VOXPIPE_STRICT_STATES`` environment
            variable; the test suite sets it).
        fallback: another brain takes the call when this one gives up (the
            service then publishes ``BrainGaveUp`` instead of ending the call;
            see :func:`voxpipe.pipelines.failover.build_failover_pipeline`).
        agents: the agents of ``agent.toml`` (``start`` + ``[agents.<name>]``): the
            call starts with the ``start`` agent's instructions (``instructions`` is
            not used) and tools (the ones it lists of ``tools``, then its
            ``transfer_to_<name>`` tools); a transfer tool hands the session over
            (:mod:`voxpipe.call.handoff_call`). Checked before the call: an agent's
            tool missing from ``tools``, two voices (a ``ConfigError`` each).
        delegate: ``[delegate]``: the model gets a ``delegate`` tool to a backend
            model and says a filler itself when the wait passes the threshold
            (:mod:`voxpipe.processors.realtime.delegation`); the tool-call state's
            limit grows to :data:`DELEGATE_CALLING_TOOL_MS` unless ``timeouts``
            says otherwise. Not with ``agents`` (a ``DelegationConfigError``).
        delegate_backend: the backend's LLM service, instead of the one
            ``delegate.backend`` names (the local LLM, or OpenAI's chat model with
            ``OPENAI_API_KEY``).
    """
    if server_url is None:
        if not (api_key or os.environ.get("OPENAI_API_KEY")) and token_provider is None:
            raise ConfigError(
                "no realtime endpoint", hint="pass server_url (voxpipe realtime-server) or a key"
            )
        server_url = OPENAI_REALTIME_URL
    # The environment's key goes to OpenAI only; another endpoint gets only its own key.
    key = key_for_endpoint(
        server_url, explicit=api_key, environment=os.environ.get("OPENAI_API_KEY")
    )
    delegation = None
    if delegate is not None:
        from voxpipe.processors.realtime.delegation import FRONTEND_INSTRUCTION, RealtimeDelegation

        environment_key = os.environ.get("OPENAI_API_KEY")  # OpenAI's own, never server_url's
        check_delegation(
            delegate,
            "<delegate>",
            BrainPath.REALTIME,
            agents=agents is not None,
            openai_key=delegate_backend is not None or bool(environment_key),
        )
        delegation = RealtimeDelegation(delegate, delegate_backend, openai_api_key=environment_key)
        tools = [*tools, delegation.tool]
        instructions = f"{instructions}\n\n{FRONTEND_INSTRUCTION}"
        timeouts = timeouts or StateTimeouts(calling_tool_ms=DELEGATE_CALLING_TOOL_MS)
    relay = _TokenEvents()
    provider = token_provider or _provider(server_url, key, ephemeral_ttl_s, relay)
    # A phone stream's G.711 goes to the brain as it is (not to another builder's service).
    audio_format = passthrough_format(transport) if brain is None else AudioFormat.PCM16_24K
    plan = plan_agents(agents, tools) if agents is not None else None
    if plan is not None:
        instructions = plan.instructions
        voice = _one_voice(voice, plan.voice)
    if voice is not None and (not voice.strip() or voice != voice.strip()):
        raise ConfigError(f"voice {voice!r} is not a voice name", hint="e.g. voice='marin'")
    context_tools = ToolsSchema(standard_tools=list(tools)) if tools and plan is None else NOT_GIVEN
    context = LLMContext(tools=context_tools)
    settings = RealtimeService.Settings(
        model=model,
        session_properties=realtime_session(
            instructions,
            transcribe=transcribe,
            server_vad=local_turns is None,
            audio_format=audio_format,
            voice=voice,
        ),
    )
    if plan is not None:
        settings.session_properties.tools = list(plan.start_tools)  # type: ignore[union-attr]
    voice_stages: list[FrameProcessor] = []
    if brain is not None:
        service: FrameProcessor = brain(
            api_key=key or "voxpipe-local", base_url=server_url, settings=settings
        )
    else:
        ledger = PlaybackLedger(audio_format)
        now_ms = _report_playback(transport, ledger, voice_stages, estimate=estimate_playback)
        config = CallConfig(
            turns=TurnDetection(
                server_vad=local_turns is None,
                silence_ms=SERVER_VAD_SILENCE_MS if local_turns is None else None,
            ),
            timeouts=timeouts or StateTimeouts(),
            rollover=rollover or RolloverConfig(),
            backoff=backoff or BackoffConfig(),
            stall_timeout_ms=stall_timeout_ms,
            strict=_strict(strict_states),
            fallback=fallback,
            input_format=audio_format,
            output_format=audio_format,
        )
        service_class: type[RealtimeService] = RealtimeService
        extra: dict[str, Any] = {}
        if plan is not None and agents is not None:
            service_class = AgentsRealtimeService
            extra = {"agents": agents, "app_tools": plan.app_tools}
        realtime = service_class(
            **extra,
            token_provider=provider,
            base_url=server_url,
            settings=settings,
            ledger=ledger,
            now_ms=now_ms,
            context=context,
            config=config,
        )
        relay.target = realtime.note_token_event
        service = realtime
        if delegation is not None:
            delegation.attach(realtime)
    _register_tools(service, tools, functions or {})
    pair = LLMContextAggregatorPair(context, user_params=_user_params(local_turns))
    if delegation is not None:  # no filler over the caller's words (held until they stop)
        from voxpipe.processors.delegation import follow_caller

        follow_caller(pair.user(), delegation)
    return assemble(
        transport,
        context=context,
        user_aggregator=pair.user(),
        assistant_aggregator=pair.assistant(),
        brain=service,
        tap=tap,
        voice=voice_stages,
        echo_guard=echo_guard,
        services={"realtime": service}
        | ({"delegate_backend": delegation.backend} if delegation is not None else {}),
    )


def _user_params(local_turns: TurnSettings | None) -> LLMUserAggregatorParams:
    """The user aggregator's turn strategies: local turns, or the server's.

    With the server's VAD the turns are the realtime service's (what pipecat's
    realtime service recommends once it starts: ``ExternalUserTurnStrategies``).
    Given from the start, because pipecat's default strategies load the
    smart-turn model for every call, which this path never uses: 80-130 ms of
    the event loop's CPU per call start at load 20 (250-570 ms wall), a hole in
    every other live call's audio.
    """
    if local_turns is not None:
        return local_turns.user_params()
    return LLMUserAggregatorParams(user_turn_strategies=ExternalUserTurnStrategies())


def _report_playback(
    transport: BaseTransport,
    ledger: PlaybackLedger,
    voice: list[FrameProcessor],
    *,
    estimate: bool,
) -> Callable[[], float]:
    """Attach the call's ledger to the output's playback reports; the clock they use."""
    output = transport.output()
    if isinstance(output, PlaybackReporter):
        output.report_playback_to(ledger)
        return output.now_ms
    if not estimate:
        raise ConfigError(
            f"{type(transport).__name__}'s output ({type(output).__name__}) does not report "
            "playback, so an interruption could not be truncated to what the caller heard",
            hint="use an output that reports it (voxpipe.playback.PlaybackReporter: the file "
            "transport, voxpipe.transports.playback_reports.ReportsPlayback on a pipecat "
            "output), or pass estimate_playback=True to count audio as heard when it is sent",
        )
    logger.warning(
        f"{type(output).__name__} does not report playback: truncation will use the "
        "sent position (estimate_playback=True), which runs ahead of what the caller heard"
    )
    estimator = SentPlaybackEstimator(ledger)
    voice.append(estimator)
    return estimator.now_ms


def _strict(strict_states: bool | None) -> bool:
    if strict_states is not None:
        return strict_states
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false")


def _register_tools(
    service: FrameProcessor, tools: Sequence[Any], functions: dict[str, Any]
) -> None:
    """Every tool handler, wrapped so a re-issued call runs once (:mod:`.idempotent_tools`)."""
    if getattr(service, "register_function", None) is None:
        return
    if isinstance(service, RealtimeService):
        realtime = service
        once = IdempotentTools(realtime.now_ms, caller_turns=lambda _params: realtime.caller_turns)
    else:  # a baseline service: the context's user messages count the turns
        once = IdempotentTools(lambda: time.monotonic() * 1000)
    once.register(service, tools, functions)


class _TokenEvents:
    """Forwards an EphemeralTokenProvider's events to the service built after it."""

    def __init__(self) -> None:
        self.target: Callable[[Any], None] | None = None

    def __call__(self, event: Any) -> None:
        if self.target is not None:
            self.target(event)


def _provider(
    server_url: str, key: str | None, ttl_s: int | None, relay: _TokenEvents
) -> TokenProvider:
    if ttl_s is None:
        return StaticKeyProvider(key) if key else NoKeyProvider()
    if not key:
        raise ConfigError(
            f"ephemeral secrets for {server_url} need a key to mint them with",
            hint="pass api_key (the server's own key), or leave ephemeral_ttl_s unset",
        )
    return EphemeralTokenProvider(mint_url_for(server_url), key, ttl_s, on_event=relay)


def mint_url_for(server_url: str) -> str:
    """``ws://host/v1/realtime`` -> ``http://host/v1/realtime/client_secrets``."""
    scheme, rest = server_url.split("://", 1)
    http = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return f"{http}://{rest.split('?', 1)[0].rstrip('/')}/client_secrets"
