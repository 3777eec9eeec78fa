"""Brains: what produces a response's words, audio and function calls.

:class:`ScriptedBrain` needs no models: it answers from a script,
deterministically, for protocol tests and load tests. The local brain (STT ->
LLM -> TTS on the offline engines) lives in :mod:`.local_brain`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from voxpipe.errors import ConfigError
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.effects import (
    AudioProduced,
    BrainOutput,
    BrainRequest,
    FunctionCallProduced,
    TextProduced,
)
from voxpipe.realtime_server.session_config import Modality

if TYPE_CHECKING:
    from voxpipe.engines.speculation import Speculation

DEFAULT_SCRIPT: tuple[str | dict[str, Any], ...] = (
    "Hello! This is the voxpipe scripted voice. How can I help you today?",
    "Sure. I can do that for you right away.",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Brain(Protocol):
    """Produces responses and transcribes user audio for one server."""

    def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        """Stream the response's output; cancelled by the driver on ``response.cancel``."""
        ...

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """Text of a user's audio item, or ``None`` when this brain cannot transcribe."""
        ...


@runtime_checkable
class SpeculativeBrain(Brain, Protocol):
    """A brain that can start a reply before the turn has ended (see ``LocalBrain``)."""

    def speculate(self, request: BrainRequest) -> Speculation[Any]:
        """Start generating the reply ``request`` would get."""
        ...

    def respond(
        self, request: BrainRequest, speculation: Speculation[Any] | None = None
    ) -> AsyncIterator[BrainOutput]:
        """Stream the response, replaying ``speculation`` when it was made for this request."""
        ...


class Voice(Protocol):
    """Anything that speaks text as PCM16 mono (the local engines' TTS matches this)."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """PCM16 chunks for ``text``."""
        ...


class SyntheticVoice:
    """A cheap deterministic voice: one hummed tone per word, for when no TTS is installed."""

    sample_rate = codec.PROTOCOL_PCM_RATE

    def __init__(self, ms_per_char: int = 55) -> None:
        self.ms_per_char = ms_per_char

    def synthesize(self, text: str) -> Iterator[bytes]:
        """About ``ms_per_char`` of tone per letter, 40 ms of silence after each word."""
        for word in text.split():
            yield _hum(word, self.ms_per_char, self.sample_rate)


@functools.lru_cache(maxsize=4096)
def _hum(word: str, ms_per_char: int, rate: int) -> bytes:
    pitch = 110 + int(hashlib.sha1(word.encode()).hexdigest()[:4], 16) % 120
    n = rate * ms_per_char * len(word) // 1000
    t = np.arange(n) / rate
    envelope = np.sin(np.pi * np.arange(n) / max(n, 1))
    tone = np.sin(2 * np.pi * pitch * t) + 0.4 * np.sin(4 * np.pi * pitch * t)
    samples = (tone * envelope * 6000).astype("<i2")
    gap = np.zeros(rate * 40 // 1000, dtype="<i2")
    return np.concatenate((samples, gap)).tobytes()


@dataclass(frozen=True)
class ScriptedFunctionCall:
    """A scripted response that calls a function."""

    name: str
    arguments: dict[str, Any]


ScriptEntry = str | ScriptedFunctionCall


def parse_script(entries: Sequence[Any]) -> list[ScriptEntry]:
    """Script entries from JSON: strings, or ``{"function_call": {"name", "arguments"}}``."""
    parsed: list[ScriptEntry] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            parsed.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("function_call"), dict):
            call = entry["function_call"]
            if not isinstance(call.get("name"), str):
                raise ConfigError(f"script entry {index}: function_call needs a string 'name'")
            parsed.append(ScriptedFunctionCall(call["name"], dict(call.get("arguments") or {})))
        else:
            raise ConfigError(
                f"script entry {index} must be a string or an object with 'function_call'"
            )
    if not parsed:
        raise ConfigError("the script is empty")
    return parsed


def load_script(path: Path) -> list[ScriptEntry]:
    """A script file: a JSON list of entries."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read script {path}: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"script {path} must be a JSON list")
    return parse_script(data)


async def speak(voice: Voice, text: str) -> bytes:
    """24 kHz PCM16 of ``text``; real engines run off the event loop."""
    if isinstance(voice, SyntheticVoice):
        return b"".join(voice.synthesize(text))
    pcm = await asyncio.to_thread(lambda: b"".join(voice.synthesize(text)))
    return codec.resample(pcm, voice.sample_rate, codec.PROTOCOL_PCM_RATE)


class ScriptedBrain:
    """Answers response ``n`` of a session with script entry ``n`` (cycling).

    Audio is streamed in ``chunk_ms`` pieces at ``pace`` times real time, as a
    real service streams faster than playback; each word's text is sent just
    before its audio so truncation keeps exactly the words that were heard.
    """

    def __init__(
        self,
        script: Sequence[ScriptEntry | str | dict[str, Any]] | None = None,
        *,
        voice: Voice | None = None,
        pace: float = 4.0,
        chunk_ms: int = 100,
    ) -> None:
        entries = list(DEFAULT_SCRIPT if script is None else script)
        self.script = [
            e if isinstance(e, ScriptedFunctionCall) else parse_script([e])[0] for e in entries
        ]
        self.voice: Voice = voice or SyntheticVoice()
        self.pace = pace
        self.chunk_ms = chunk_ms

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """The scripted brain hears nothing it can transcribe."""
        return None

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        """Stream the script entry for this response."""
        entry = self.script[request.turn_index % len(self.script)]
        if isinstance(entry, ScriptedFunctionCall):
            call_id = "call_" + uuid.uuid5(uuid.NAMESPACE_OID, request.response_id).hex[:16]
            yield FunctionCallProduced(entry.name, json.dumps(entry.arguments), call_id)
            return
        if request.modality is Modality.TEXT:
            for word in entry.split(" "):
                yield TextProduced(word + " ")
            return
        # The synthetic voice aligns word by word; a real TTS speaks whole sentences.
        per_word = isinstance(self.voice, SyntheticVoice)
        for sentence in _SENTENCE_END.split(entry):
            for phrase in sentence.split() if per_word else [sentence]:
                yield TextProduced(phrase + " ")
                async for chunk in self._paced(await speak(self.voice, phrase)):
                    yield AudioProduced(chunk)

    async def _paced(self, pcm: bytes) -> AsyncIterator[bytes]:
        step = codec.PROTOCOL_PCM_RATE * 2 * self.chunk_ms // 1000
        for start in range(0, len(pcm), step):
            piece = pcm[start : start + step]
            yield piece
            if self.pace > 0:
                await asyncio.sleep(len(piece) / (codec.PROTOCOL_PCM_RATE * 2) / self.pace)
