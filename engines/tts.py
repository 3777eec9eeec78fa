"""The local voices: Piper (GPL-3.0 extra) and eSpeak NG (permissive), PCM16 out."""

from __future__ import annotations

import ctypes
import enum
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from voxpipe import weights
from voxpipe.errors import ConfigError, ModelMissingError


class TTSEngineKind(enum.Enum):
    """Which local voice to use. AUTO takes Piper when installed, else eSpeak NG."""

    AUTO = "auto"
    PIPER = "piper"
    ESPEAK = "espeak"


class SpeechEngine(Protocol):
    """What a TTS engine offers: its rate and a stream of PCM16 mono chunks."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]: ...


class PiperEngine:
    """Piper en_US-joe-medium (22.05 kHz). GPL-3.0: installed as an optional extra."""

    def __init__(
        self, model: Path | None = None, config: Path | None = None, *, deterministic: bool = False
    ) -> None:
        try:
            from piper import PiperVoice
            from piper.config import SynthesisConfig
        except ImportError as exc:
            raise ModelMissingError(
                "piper-tts is not installed", hint=weights.INSTALL_HINT
            ) from exc
        if model is None or config is None:
            model, config = weights.piper_voice()
        self._voice = PiperVoice.load(str(model), config_path=str(config))
        self.sample_rate: int = int(self._voice.config.sample_rate)
        # Piper's generator and phoneme-width noise are drawn afresh on every
        # call, so one text renders differently each time (length included: 141
        # to 149 k bytes for one sentence). With both at zero a text always
        # renders to the same audio: what a test or an evaluation that plays a
        # caller needs to be reproducible.
        self._config = (
            SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if deterministic else None
        )
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16 sentence by sentence, as Piper produces it."""
        if not text.strip():
            return
        sentences = iter(self._voice.synthesize(text, syn_config=self._config))
        while True:
            # The lock covers one sentence at a time, so two calls interleave
            # sentences instead of one waiting for the other's whole reply.
            with self._lock:
                chunk = next(sentences, None)
            if chunk is None:
                return
            yield chunk.audio_int16_bytes


_ESPEAK_SYNCHRONOUS = 2


_ESPEAK_CHARS_UTF8 = 1


_ESPEAK_RATE = 1


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakEngine:
    """eSpeak NG through the library bundled by ``espeakng-loader`` (the permissive voice)."""

    _lib: Any = None
    _global_lock = threading.Lock()

    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 165) -> None:
        lib_path, data_path = weights.espeak_paths()
        with EspeakEngine._global_lock:
            if EspeakEngine._lib is None:
                lib = ctypes.CDLL(str(lib_path))
                rate = lib.espeak_Initialize(_ESPEAK_SYNCHRONOUS, 0, str(data_path).encode(), 0)
                if rate <= 0:
                    raise ModelMissingError(f"eSpeak NG failed to initialise from {data_path}")
                EspeakEngine._lib = lib
                EspeakEngine._rate = int(rate)
        self.sample_rate = EspeakEngine._rate
        self._voice = voice.encode()
        self._wpm = words_per_minute
        self._chunks: list[bytes] = []
        # Keep a reference: ctypes callbacks die with their Python object.
        self._callback = _SynthCallback(self._on_audio)

    _rate: int = 22050

    def _on_audio(self, samples: Any, count: int, _events: Any) -> int:
        if count > 0:
            self._chunks.append(ctypes.string_at(samples, count * 2))
        return 0

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return
        lib = EspeakEngine._lib
        data = text.encode("utf-8") + b"\0"
        with EspeakEngine._global_lock:  # eSpeak NG is a process-wide singleton
            self._chunks = []
            lib.espeak_SetSynthCallback(self._callback)
            lib.espeak_SetVoiceByName(self._voice)
            lib.espeak_SetParameter(_ESPEAK_RATE, self._wpm, 0)
            lib.espeak_Synth(data, len(data), 0, 1, 0, _ESPEAK_CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        yield from chunks


def make_tts(
    kind: TTSEngineKind | str = TTSEngineKind.AUTO, *, deterministic: bool = False
) -> SpeechEngine:
    """Build the chosen TTS engine; AUTO prefers Piper and falls back to eSpeak NG.

    ``deterministic`` makes a text render to the same audio every time (Piper
    without its sampling noise; eSpeak NG always is), for callers in tests and
    evaluations that must replay the same.
    """
    try:
        kind = TTSEngineKind(kind)
    except ValueError as exc:
        raise ConfigError(f"unknown TTS engine {kind!r}", hint="use auto, piper or espeak") from exc
    if kind is TTSEngineKind.ESPEAK:
        return EspeakEngine()
    try:
        return PiperEngine(deterministic=deterministic)
    except ModelMissingError:
        if kind is TTSEngineKind.PIPER:
            raise
        return EspeakEngine()
