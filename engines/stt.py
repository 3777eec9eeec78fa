"""Whisper speech-to-text (faster-whisper tiny.en), loaded by local path."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import numpy as np

from voxpipe import weights

WHISPER_RATE = 16_000


def pcm16_to_float(pcm16: bytes) -> np.ndarray:
    """PCM16 little-endian bytes -> float32 in [-1, 1]; a trailing odd byte is dropped."""
    usable = len(pcm16) - (len(pcm16) % 2)
    return np.frombuffer(pcm16[:usable], dtype="<i2").astype(np.float32) / 32768.0


class WhisperEngine:
    """faster-whisper tiny.en, int8 on the CPU.

    Whisper's encoder is built for 30 s windows, and faster-whisper pads every
    segment to one: on 2 cores that costs ~700 ms for a two-second question.
    CTranslate2 accepts a shorter mel window, so a segment that fits in
    ``short_window_secs`` is encoded in that window instead (~100 ms) and
    decoded greedily with a token budget matching its length. Windows much
    shorter than 10 s made tiny.en loop on its own words in our test set.
    The window is padded with silent audio, as faster-whisper pads to 30 s.
    On 28 generated clips (Piper voices vary run to run) 10, 15 and 20 s
    windows took 194, 238 and 306 ms against ~550 ms for 30 s, at mean word
    error rates within the 30 s window's own run-to-run spread (0.02-0.03),
    but each misheard a single word the 30 s window got right ("France" ->
    "friends" at 10 s), so it stays opt-in (``short_window_secs=15``).
    Longer audio takes faster-whisper's own path.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        cpu_threads: int = 2,
        short_window_secs: float | None = None,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model_dir = model_dir or weights.whisper_dir()
        self._model = WhisperModel(
            str(self.model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            local_files_only=True,
        )
        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self._short_window_secs = short_window_secs
        self._lock = threading.Lock()

    def transcribe(self, pcm16: bytes, sample_rate: int = WHISPER_RATE) -> str:
        """Transcribe mono PCM16 speech; returns "" for silence."""
        audio = pcm16_to_float(pcm16)
        if sample_rate != WHISPER_RATE:
            import soxr

            audio = soxr.resample(audio, sample_rate, WHISPER_RATE).astype(np.float32)
        if audio.size < WHISPER_RATE // 10:
            return ""
        window = self._short_window_secs
        with self._lock:
            if window is not None and audio.size <= (window - 0.5) * WHISPER_RATE:
                text = self._transcribe_short(audio, window)
                if text is not None:
                    return text
            segments, _ = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            # no_speech_prob filters Whisper's habit of hallucinating on silence.
            texts = [s.text for s in segments if s.no_speech_prob < _NO_SPEECH]
        return " ".join(t.strip() for t in texts).strip()

    def _transcribe_short(self, audio: np.ndarray, window_secs: float) -> str | None:
        """The short-window transcript; ``None`` when it looks looped (the caller retries)."""
        import ctranslate2  # type: ignore[import-untyped]

        # Pad the audio (not the features) to the window: the log-mel of silence is
        # normalised against the loudest frame, so zero *features* are not silence
        # and made tiny.en mishear the short window ("France" -> "friends").
        frames = int(window_secs * 100)  # 10 ms mel frames
        padding = max(160, int(window_secs * WHISPER_RATE) - audio.size + 160)
        features = self._model.feature_extractor(audio, padding=padding)
        batch = np.ascontiguousarray(features[None, :, :frames], dtype=np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        # About 4 tokens per second of speech; the budget stops a looping decode.
        budget = len(self._prompt) + 16 + int(8 * audio.size / WHISPER_RATE)
        (result,) = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=budget,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        if result.no_speech_prob >= _NO_SPEECH:
            return ""
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        text: str = self._tokenizer.decode(tokens).strip()
        if len(result.sequences_ids[0]) + len(self._prompt) >= budget or _looped(text):
            return None
        return text


_NO_SPEECH = 0.6


def _looped(text: str) -> bool:
    """Whether a sentence repeats back to back, tiny.en's failure on a short window."""
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return any(a == b for a, b in itertools.pairwise(sentences))
