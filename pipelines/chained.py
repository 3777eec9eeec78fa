"""The chained fallback: VAD -> Whisper STT -> LLM -> TTS, offline by default.

With no key every engine is local (faster-whisper, llama.cpp, Piper or eSpeak
NG). With ``OPENAI_API_KEY`` (or ``openai_api_key=``) the same slots take
OpenAI's Whisper, chat and TTS services.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.processors.aggregators.llm_context import NOT_GIVEN, LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from voxpipe.agents import AgentsConfig, BrainPath
from voxpipe.delegation import DelegationSettings, check_delegation
from voxpipe.engines import TTSEngineKind
from voxpipe.pipelines.graph import VoiceGraph, assemble
from voxpipe.processors.idempotent_tools import IdempotentTools
from voxpipe.processors.local.turn_clock import (
    CallerSilenceTimeout,
    CallerSilenceVAD,
    hold_turn_open,
)
from voxpipe.slot_config import ChainedSlots

if TYPE_CHECKING:
    from voxpipe.engines.speculation import Speculation

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant on a phone line. Answer in one or two short "
    "spoken sentences. No lists, no markdown."
)


@dataclass(frozen=True)
class TurnSettings:
    """How the caller's turn is detected: Silero VAD, then silence or smart-turn.

    Measured on the 20-turn set of ``benchmarks/voice_to_voice.py`` (2 cores):
    0.2 s VAD stop + 0.6 s speech timeout ended no turn early; a 0.2 s timeout
    saved ~330 ms but cut in on 15% of turns (pauses at commas); smart-turn v3
    cut in on 10% and waited 3 s at p95 on the turns it judged unfinished.
    ``early_transcript_ms`` (60) has local Whisper begin at a pause that short,
    before the VAD's stop: the transcript came ~120 ms sooner, WER unchanged.
    """

    vad_stop_secs: float = 0.2
    vad_confidence: float = 0.6
    user_speech_timeout_secs: float = 0.6
    smart_turn: bool = False
    # Local Whisper begins a segment's transcript after this long a pause in mid-speech,
    # before the VAD's stop (vad_stop_secs) is said; None: at the stop.
    early_transcript_ms: float | None = 60.0

    def user_params(self) -> LLMUserAggregatorParams:
        vad = CallerSilenceVAD(
            params=VADParams(stop_secs=self.vad_stop_secs, confidence=self.vad_confidence),
            pause_after_ms=self.early_transcript_ms,
        )
        if self.smart_turn:
            strategies = UserTurnStrategies()  # pipecat's default: the bundled smart-turn v3
        else:
            # The pause is counted on the caller's audio, not the wall clock (turn_clock).
            stop = CallerSilenceTimeout(vad, user_speech_timeout=self.user_speech_timeout_secs)
            strategies = UserTurnStrategies(stop=[stop])
        return LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies)


def build_chained_pipeline(
    transport: BaseTransport,
    *,
    instructions: str = DEFAULT_INSTRUCTIONS,
    tools: Sequence[FunctionSchema | Any] = (),
    functions: dict[str, Any] | None = None,
    tap: FrameProcessor | None = None,
    echo_guard: FrameProcessor | None = None,
    turn: TurnSettings | None = None,
    voice: TTSEngineKind | str = TTSEngineKind.AUTO,
    openai_api_key: str | None = None,
    openai_voice: str | None = None,
    stt: FrameProcessor | None = None,
    llm: Any = None,
    tts: FrameProcessor | None = None,
    slots: ChainedSlots | None = None,
    agents: AgentsConfig | None = None,
    delegate: DelegationSettings | None = None,
) -> VoiceGraph:
    """Build transport in -> VAD/turn -> STT -> LLM -> [tap] -> TTS -> transport out.

    Args:
        instructions: the system prompt.
        tools: ``FunctionSchema`` objects (handlers in ``functions``) or direct
            functions (async callables taking ``FunctionCallParams``).
        functions: handler per ``FunctionSchema`` name.
        tap: a processor that sees the LLM's text before it is synthesised
            (the guardrail tap's slot).
        echo_guard: a processor right after the transport's input, before VAD
            and STT (the :class:`~voxpipe.processors.echo_guard.EchoGuardProcessor`).
        openai_api_key: use OpenAI's services in the STT/LLM/TTS slots;
            defaults to ``OPENAI_API_KEY`` when set, else the local engines.
        openai_voice: the voice of OpenAI's TTS in the TTS slot (``marin``...;
            its default ``alloy`` when None; one it has not is a ``ConfigError``).
        stt, llm, tts: explicit services, overriding the defaults per slot.
        slots: engines per slot in order (``[chained]`` in ``agent.toml``); a slot
            listed there takes a fallback service that hands a failed or late
            request to its next engine (:mod:`voxpipe.processors.slot_fallback`).
        agents: the agents of ``agent.toml`` (``start`` + ``[agents.<name>]``): the
            context starts with the ``start`` agent's instructions (``instructions``
            is not used; an explicit ``llm`` must have no system instruction of its
            own) and tools, and a ``transfer_to_<name>`` tool swaps them
            (:mod:`voxpipe.processors.chained_handoff`). On the local TTS an
            agent's ``voice`` is a local voice (``piper``, ``espeak``; another is an
            ``AgentsConfigError``) and ``voice`` is the voice of agents without one;
            with another TTS, a handed-off agent's voice is sent to it as given.
        delegate: ``[delegate]``: the voice model (the LLM slot) gets a ``delegate``
            tool to a backend model, and a filler covers a long wait
            (:func:`~voxpipe.processors.delegation.delegating_llm`); not with
            ``agents`` or an LLM in ``slots`` (``DelegationConfigError``).
    """
    key = openai_api_key if openai_api_key is not None else os.environ.get("OPENAI_API_KEY")
    check_delegation(
        delegate,
        "<delegate>",
        BrainPath.CHAINED,
        agents=agents is not None,
        llm_slots=slots is not None and slots.llm is not None and llm is None,
        openai_key=bool(key),
    )
    handoffs = None
    if agents is not None:
        from voxpipe.pipelines.agents import plan_agents
        from voxpipe.processors.chained_handoff import ChainedHandoffs

        plan_agents(agents, tools, BrainPath.CHAINED)
        handoffs = ChainedHandoffs(agents, tools, now_ms=lambda: time.monotonic() * 1000)
        instructions = ""  # the context's system message is the agent's
    if slots is not None:
        stt, llm, tts = _fallback_slots(slots, instructions, openai_api_key, stt, llm, tts)
    headers = None
    if key and (stt is None or llm is None or tts is None):
        from voxpipe.processors.openai_http import openai_services

        remote = openai_services(key, instructions=instructions, voice=openai_voice)
        headers = remote.headers
        stt, llm, tts = stt or remote.stt, llm or remote.llm, tts or remote.tts
    stt = stt or _local_stt()
    llm = llm or _local_llm(instructions)
    if tts is None and handoffs is not None:  # the local TTS speaks in each agent's voice
        voice = handoffs.local_voices(TTSEngineKind(voice).value, [k.value for k in TTSEngineKind])
    tts = tts or _local_tts(voice)
    # Every handler runs once per logical call, whatever re-issues it (a barge-in, a failover).
    IdempotentTools(lambda: time.monotonic() * 1000).register(llm, tools, functions)
    if delegate is not None:  # after the tools: they go on the voice model itself
        from voxpipe.processors.delegation import delegating_llm

        llm = delegating_llm(llm, delegate, openai_api_key=key)
    context = LLMContext(tools=list(tools) if tools else NOT_GIVEN)
    if handoffs is not None:
        context = handoffs.start_context()
        handoffs.register(llm)
    _prefill_on_transcripts(stt, llm, context, tts)
    user_params = (turn or TurnSettings()).user_params()
    pair = LLMContextAggregatorPair(context, user_params=user_params)
    _transcribe_at_pauses(stt, user_params.vad_analyzer)
    if delegate is not None:  # no filler over the caller's words (held until they stop)
        from voxpipe.processors.delegation import follow_caller

        follow_caller(pair.user(), llm.connector)
    _hold_turns_for_transcripts(stt, pair.user())
    return assemble(
        transport,
        context=context,
        user_aggregator=pair.user(),
        assistant_aggregator=pair.assistant(),
        pre=[stt],
        brain=llm,
        tap=tap,
        voice=[tts],
        echo_guard=echo_guard,
        services={"stt": stt, "llm": llm, "tts": tts},
        rate_limit_headers=headers,
    )


def _hold_turns_for_transcripts(stt: FrameProcessor, user_aggregator: Any) -> None:
    """Local Whisper: the caller's turn lasts until its transcript is in (turn_clock).

    Without it a transcript slower than the turn watchdog (5 s, under load)
    ended the turn empty, and one question asked the LLM twice.
    """
    from voxpipe.processors.local.stt import LocalWhisperSTTService

    if isinstance(stt, LocalWhisperSTTService):
        stt.hold_turns(hold_turn_open(user_aggregator))


def _transcribe_at_pauses(stt: FrameProcessor, vad: Any) -> None:
    """Local Whisper and ``TurnSettings.early_transcript_ms``: transcripts begin at the pause."""
    from voxpipe.processors.local.stt import LocalWhisperSTTService

    wanted = isinstance(vad, CallerSilenceVAD) and vad.pause_after_ms is not None
    if wanted and isinstance(stt, LocalWhisperSTTService):
        stt.transcribe_at_pauses(vad)


def _prefill_on_transcripts(
    stt: FrameProcessor, llm: Any, context: LLMContext, tts: FrameProcessor
) -> None:
    """Local engines: get ahead on the reply while the end of the caller's turn is decided.

    Each transcript starts a speculative reply (or a prompt prefill); the
    caller speaking again drops it.
    """
    from voxpipe.processors.local.llm import LocalLLMService
    from voxpipe.processors.local.stt import LocalWhisperSTTService
    from voxpipe.processors.local.tts import LocalTTSService

    if isinstance(stt, LocalWhisperSTTService) and isinstance(llm, LocalLLMService):
        stt.add_transcript_listener(lambda heard: llm.prefill(context, heard))
        stt.add_speech_started_listener(llm.caller_resumed)
        if isinstance(tts, LocalTTSService):
            voice = tts

            def _speak_ahead(speculation: Speculation[dict[str, Any]]) -> None:
                asyncio.get_running_loop().create_task(_first_piece_ahead(speculation, voice))

            llm.add_speculation_listener(_speak_ahead)


async def _first_piece_ahead(speculation: Speculation[dict[str, Any]], tts: Any) -> None:
    """Synthesise a speculated reply's first piece of speech while the turn is decided."""
    try:
        await _presynthesize_first_piece(speculation, tts)
    except Exception as exc:  # only a head start was lost: the turn speaks as usual
        logger.debug(f"speaking ahead failed: {exc}")


async def _presynthesize_first_piece(speculation: Speculation[dict[str, Any]], tts: Any) -> None:
    splitter = tts.piece_splitter()
    async for chunk in speculation.replay(cancel_on_exit=False):
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text and (pieces := splitter.feed(text)):
                await tts.presynthesize(pieces[0])
                return
    if (last := splitter.finish()) is not None:
        await tts.presynthesize(last)


def _local_stt() -> FrameProcessor:
    from voxpipe.processors.local.stt import LocalWhisperSTTService

    return LocalWhisperSTTService()


def _local_llm(instructions: str) -> Any:
    from voxpipe.processors.local.llm import LocalLLMService

    return LocalLLMService(instructions=instructions)


def _local_tts(voice: TTSEngineKind | str) -> FrameProcessor:
    from voxpipe.processors.local.tts import LocalTTSService

    return LocalTTSService(voice=voice)


def _fallback_slots(
    slots: ChainedSlots,
    instructions: str,
    api_key: str | None,
    stt: FrameProcessor | None,
    llm: Any,
    tts: FrameProcessor | None,
) -> tuple[FrameProcessor | None, Any, FrameProcessor | None]:
    """The fallback services of the slots ``slots`` lists (an explicit service wins)."""
    from voxpipe.processors import slot_members as members
    from voxpipe.processors.slot_fallback import (
        FallbackLLMService,
        FallbackSTTService,
        FallbackTTSService,
    )

    if stt is None and slots.stt is not None:
        stt = FallbackSTTService(
            [members.transcriber(e) for e in slots.stt.engines], slots.stt.fallback()
        )
    if llm is None and slots.llm is not None:
        sources = [
            members.chat_source(e, instructions=instructions, api_key=api_key)
            for e in slots.llm.engines
        ]
        llm = FallbackLLMService(sources, slots.llm.fallback(), instructions=instructions)
    if tts is None and slots.tts is not None:
        tts = FallbackTTSService(
            [members.voice(e) for e in slots.tts.engines], slots.tts.fallback()
        )
    return stt, llm, tts
