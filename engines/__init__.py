"""The offline engines: Whisper STT, llama.cpp LLM, Piper and eSpeak NG TTS.

Plain synchronous wrappers around the model libraries, loaded from local paths
(see :mod:`voxpipe.weights`), split by role (:mod:`.stt`, :mod:`.llm`,
:mod:`.tts`). They are CPU-bound: drivers call them with ``asyncio.to_thread``
or :func:`~.in_thread.iterate_in_thread`. :func:`shared_engines` loads each
model once per process, off the event loop, and every call in the process
shares them. A model object that is not thread-safe is guarded by its own
lock, so concurrent calls queue for it rather than corrupt it.

These are not pipecat processors: the pipecat services that wrap them live in
:mod:`voxpipe.processors.local`; the server's local brain and ``voxpipe batch``
use them directly.
"""

from voxpipe.engines.llm import GenerationStats, GenerationUsage, LlamaEngine, LLMChunk, ToolCall
from voxpipe.engines.shared import (
    LocalEngines,
    shared_engines,
    shared_llm,
    shared_stt,
    shared_tts,
)
from voxpipe.engines.stt import WHISPER_RATE, WhisperEngine, pcm16_to_float
from voxpipe.engines.tts import EspeakEngine, PiperEngine, SpeechEngine, TTSEngineKind, make_tts

__all__ = [
    "WHISPER_RATE",
    "EspeakEngine",
    "GenerationStats",
    "GenerationUsage",
    "LLMChunk",
    "LlamaEngine",
    "LocalEngines",
    "PiperEngine",
    "SpeechEngine",
    "TTSEngineKind",
    "ToolCall",
    "WhisperEngine",
    "make_tts",
    "pcm16_to_float",
    "shared_engines",
    "shared_llm",
    "shared_stt",
    "shared_tts",
]
