"""The engines one process shares: each model loaded once, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from voxpipe.engines.llm import LlamaEngine
from voxpipe.engines.stt import WhisperEngine
from voxpipe.engines.tts import SpeechEngine, TTSEngineKind, make_tts


@dataclass
class LocalEngines:
    """The engines one process shares between all its calls."""

    stt: WhisperEngine
    llm: LlamaEngine
    tts: SpeechEngine


T = TypeVar("T")

_cache: dict[tuple[str, ...], Any] = {}


_cache_lock = threading.Lock()


def _build_once(key: tuple[str, ...], factory: Any) -> Any:
    with _cache_lock:  # a thread lock: callers may come from different event loops
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


async def _shared(key: tuple[str, ...], factory: Any) -> Any:
    """Build ``factory()`` once per process, in a worker thread; later callers share it."""
    if key in _cache:
        return _cache[key]
    return await asyncio.to_thread(_build_once, key, factory)


async def shared_model(key: tuple[str, ...], factory: Callable[[], T]) -> T:
    """Build ``factory()`` once per process per ``key`` (a model at a path of the caller's).

    A factory that raises is not remembered: the next caller tries again.
    """
    model: T = await _shared(key, factory)
    return model


async def shared_stt() -> WhisperEngine:
    engine: WhisperEngine = await _shared(("stt",), WhisperEngine)
    return engine


async def shared_llm() -> LlamaEngine:
    engine: LlamaEngine = await _shared(("llm",), LlamaEngine)
    return engine


async def shared_tts(kind: TTSEngineKind | str = TTSEngineKind.AUTO) -> SpeechEngine:
    resolved = TTSEngineKind(kind) if not isinstance(kind, TTSEngineKind) else kind
    engine: SpeechEngine = await _shared(("tts", resolved.value), lambda: make_tts(resolved))
    return engine


async def shared_engines(*, tts: TTSEngineKind | str = TTSEngineKind.AUTO) -> LocalEngines:
    """Load (once per process, off the event loop) and return the shared engines."""
    stt, llm, voice = await asyncio.gather(shared_stt(), shared_llm(), shared_tts(tts))
    return LocalEngines(stt=stt, llm=llm, tts=voice)
