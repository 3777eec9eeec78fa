"""The engines a chained slot can fall back between, behind one small contract per slot.

A fallback service (:mod:`voxpipe.processors.slot_fallback`) hands one request
to these in order. Each loads lazily (:meth:`load`; a model that cannot load
fails the request it was asked for, and the slot hands that request on) and
serves one request at a time:

- :class:`Transcriber` (STT): a segment of PCM16 in, its transcript out;
- :class:`ChatSource` (LLM): the call's ``LLMContext`` in, OpenAI
  ``ChatCompletionChunk``\\ s out, so the wrapping pipecat LLM service keeps its
  streaming and function-calling machinery whichever engine answers;
- :class:`Voice` (TTS): a sentence in, PCM16 chunks out at ``sample_rate``.

Local engines are shared per process and per model path, as the default
engines are (:mod:`voxpipe.engines.shared`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from openai.types.chat import ChatCompletionChunk
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe.engines import (
    LlamaEngine,
    PiperEngine,
    SpeechEngine,
    TTSEngineKind,
    WhisperEngine,
    shared_llm,
    shared_stt,
    shared_tts,
)
from voxpipe.engines.in_thread import iterate_in_thread
from voxpipe.engines.shared import shared_model
from voxpipe.errors import ConfigError, ModelMissingError
from voxpipe.slot_config import EngineKind, EngineSpec

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"


class Member(Protocol):
    """What every slot engine has: a label, a side, and a lazy load."""

    name: str
    remote: bool

    async def load(self) -> None: ...


class Transcriber(Member, Protocol):
    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str: ...


class ChatSource(Member, Protocol):
    def chunks(self, context: LLMContext) -> AsyncIterator[ChatCompletionChunk]: ...


class Voice(Member, Protocol):
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]: ...


class WhisperTranscriber:
    """faster-whisper: tiny.en by default, or the CTranslate2 model directory ``spec.model``."""

    remote = False

    def __init__(self, spec: EngineSpec) -> None:
        self.name = spec.name
        self._model = Path(spec.model) if spec.model else None
        self._engine: WhisperEngine | None = None

    async def load(self) -> None:
        if self._engine is not None:
            return
        model = self._model
        if model is None:
            self._engine = await shared_stt()
            return
        if not (model / "model.bin").is_file():  # faster-whisper would ask a model hub
            raise ModelMissingError(f"no Whisper model at {model} (model.bin not found)")
        self._engine = await shared_model(("stt", str(model)), lambda: WhisperEngine(model))

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str:
        await self.load()
        assert self._engine is not None
        text: str = await asyncio.to_thread(self._engine.transcribe, pcm16, sample_rate)
        return text


class LlamaSource:
    """llama.cpp: the default Qwen2.5-0.5B, or the GGUF file ``spec.model``."""

    remote = False

    def __init__(self, spec: EngineSpec, *, instructions: str, max_tokens: int = 120) -> None:
        self.name = spec.name
        self._model = Path(spec.model) if spec.model else None
        self._instructions = instructions
        self._max_tokens = max_tokens
        self._service: Any = None

    async def load(self) -> None:
        if self._service is not None:
            return
        from voxpipe.processors.local.llm import LocalLLMService

        model = self._model
        if model is None:
            engine = await shared_llm()
        else:
            engine = await shared_model(("llm", str(model)), lambda: LlamaEngine(model))
        self._service = LocalLLMService(
            engine=engine,
            instructions=self._instructions,
            max_tokens=self._max_tokens,
            speculate=False,
        )

    async def chunks(self, context: LLMContext) -> AsyncIterator[ChatCompletionChunk]:
        await self.load()
        stream = await self._service.get_chat_completions(context)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()


class OpenAISource:
    """OpenAI's chat completions (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` for a compatible one)."""

    remote = True

    def __init__(self, spec: EngineSpec, *, instructions: str, api_key: str | None) -> None:
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(
                f"the LLM engine {spec.name!r} (openai) needs a key",
                hint="set OPENAI_API_KEY",
            )
        self.name = spec.name
        settings = OpenAILLMService.Settings(
            model=spec.model or DEFAULT_OPENAI_MODEL, system_instruction=instructions
        )
        self._service = OpenAILLMService(api_key=key, settings=settings)

    async def load(self) -> None:
        return None  # nothing to load: the provider is reached per request

    async def chunks(self, context: LLMContext) -> AsyncIterator[ChatCompletionChunk]:
        stream = await self._service.get_chat_completions(context)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.close()  # the SDK's stream: releases its HTTP connection


class LocalVoice:
    """Piper (its default voice, or the ``.onnx`` at ``spec.model``) or eSpeak NG."""

    remote = False

    def __init__(self, spec: EngineSpec) -> None:
        self.name = spec.name
        self._kind = spec.kind
        self._model = Path(spec.model) if spec.model else None
        self._engine: SpeechEngine | None = None
        self.sample_rate = 0

    async def load(self) -> None:
        if self._engine is None:
            self._engine = await self._build()
            self.sample_rate = self._engine.sample_rate

    async def _build(self) -> SpeechEngine:
        if self._kind is EngineKind.ESPEAK:
            return await shared_tts(TTSEngineKind.ESPEAK)
        model = self._model
        if model is None:
            return await shared_tts(TTSEngineKind.PIPER)
        config = model.with_name(model.name + ".json")  # Piper's own layout: voice.onnx.json
        if not model.is_file() or not config.is_file():
            raise ModelMissingError(f"no Piper voice at {model} (and {config.name} beside it)")
        return await shared_model(("tts", str(model)), lambda: PiperEngine(model, config))

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        await self.load()
        engine = self._engine
        assert engine is not None
        async for chunk in iterate_in_thread(lambda _stop: engine.synthesize(text)):
            yield chunk


def transcriber(spec: EngineSpec) -> Transcriber:
    """The STT engine ``spec`` names."""
    return WhisperTranscriber(spec)


def chat_source(spec: EngineSpec, *, instructions: str, api_key: str | None = None) -> ChatSource:
    """The LLM engine ``spec`` names."""
    if spec.kind is EngineKind.OPENAI:
        return OpenAISource(spec, instructions=instructions, api_key=api_key)
    return LlamaSource(spec, instructions=instructions)


def voice(spec: EngineSpec) -> Voice:
    """The TTS engine ``spec`` names."""
    return LocalVoice(spec)
