"""Offline speech detection over a whole recording, with pipecat's bundled Silero model."""

from __future__ import annotations

from importlib.resources import files

import numpy as np

WINDOW = 512  # samples at 16 kHz: the window Silero v5 is trained on
WINDOW_MS = WINDOW / 16.0


def voiced_windows(pcm16_16k: bytes, *, threshold: float = 0.5) -> list[bool]:
    """Whether Silero scores each ``WINDOW`` of 16 kHz PCM16 as speech, in order."""
    from pipecat.audio.vad.silero import SileroOnnxModel

    model = SileroOnnxModel(str(files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")))
    samples = np.frombuffer(pcm16_16k[: len(pcm16_16k) // 2 * 2], dtype="<i2")
    audio = samples.astype(np.float32) / 32768.0
    return [
        float(model(audio[start : start + WINDOW], 16_000)[0][0]) >= threshold
        for start in range(0, audio.size - WINDOW + 1, WINDOW)
    ]


def speech_ms(pcm16_16k: bytes, *, threshold: float = 0.5) -> float:
    """Milliseconds of 16 kHz PCM16 that Silero scores as speech."""
    return sum(voiced_windows(pcm16_16k, threshold=threshold)) * WINDOW_MS
