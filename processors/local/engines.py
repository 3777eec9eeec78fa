"""The offline engines: Whisper STT, llama.cpp LLM, Piper and eSpeak NG TTS.

Plain synchronous wrappers around the model libraries, loaded from local paths
(see :mod:`voxpipe.weights`). They are CPU-bound: drivers call them with
``asyncio.to_thread``. :func:`shared_engines` loads each model once per process,
off the event loop, and every call in the process shares them. A model object
that is not thread-safe is guarded by its own lock, so concurrent calls queue
for it rather than corrupt it.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxpipe import weights
from voxpipe.errors import ConfigError, ModelMissingError

WHISPER_RATE = 16_000


class TTSEngineKind(enum.Enum):
    """Which local voice to use. AUTO takes Piper when installed, else eSpeak NG."""

    AUTO = "auto"
    PIPER = "piper"
    ESPEAK = "espeak"


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for."""

    name: str
    arguments: str
    call_id: str


@dataclass(frozen=True)
class LLMChunk:
    """One streamed piece of a chat reply: a text delta, or the final tool calls."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


class SpeechEngine(Protocol):
    """What a TTS engine offers: its rate and a stream of PCM16 mono chunks."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]: ...


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


@dataclass(frozen=True)
class GenerationStats:
    """One generation's prompt work: how much of the prompt llama.cpp's KV cache held."""

    prompt_tokens: int
    cached_tokens: int
    first_token_ms: float


@dataclass
class GenerationUsage:
    """Tokens one reply took, summed over its generations (a retry after a bad tool call)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def as_openai(self) -> dict[str, Any]:
        """The ``usage`` object of a chat completion."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


class LlamaEngine:
    """Qwen2.5-0.5B-Instruct (GGUF) through llama-cpp-python: streaming, with tool calls.

    Prompts are rendered with the model's own chat template (Qwen's tool format:
    a JSON object ``{"name", "arguments"}`` per call). Two measured weaknesses of
    a 0.5B model are handled here rather than left to every caller: after a tool
    result it tends to call the tool again, so earlier tool exchanges are shown
    to it as plain notes and it answers without tools; and a call to a tool it
    was not given is discarded and the reply regenerated as text.
    """

    def __init__(
        self, model_path: Path | None = None, *, n_ctx: int = 4096, n_threads: int = 2
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = model_path or weights.llm_path()
        self._llm = Llama(
            model_path=str(self.model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        self._format = Jinja2ChatFormatter(
            self._llm.metadata["tokenizer.chat_template"],
            eos_token="<|im_end|>",
            bos_token="",
            add_generation_prompt=True,
        )
        self._lock = threading.Lock()
        self.generations: list[GenerationStats] = []  # the latest few, for profiling

    def _render(self, chat: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        prompt: str = self._format(messages=chat, tools=tools).prompt  # type: ignore[arg-type]
        return prompt

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 200,
        temperature: float = 0.2,
        stop: threading.Event | None = None,
        usage: GenerationUsage | None = None,
    ) -> Iterator[LLMChunk]:
        """Stream a reply: text deltas, then one chunk carrying any tool calls.

        The lock is held for the whole generation: llama.cpp's context is
        single-threaded, and one generation at a time keeps the KV cache of the
        conversation's prefix warm for the next turn.
        """
        chat = _plain_tool_history(messages)
        offer_tools = bool(tools) and messages[-1].get("role") != "tool"
        with self._lock:
            prompt = self._render(chat, tools if offer_tools else None)
            pieces = self._generate(prompt, max_tokens, temperature, stop, usage)
            if not offer_tools:
                for piece in pieces:
                    yield LLMChunk(text=piece)
                return
            head = ""
            for piece in pieces:
                head += piece
                if head.strip():
                    break
            # Qwen writes a call as bare JSON, sometimes inside a ``` fence.
            if not head.lstrip().startswith(("{", "`")):
                yield LLMChunk(text=head)
                for piece in pieces:
                    yield LLMChunk(text=piece)
                return
            calls = _parse_tool_calls(head + "".join(pieces), tools or [])
            if calls:
                yield LLMChunk(tool_calls=calls)
                return
            # Not a call to a tool it has: answer in words instead.
            prompt = self._render(chat, None)
            for piece in self._generate(prompt, max_tokens, temperature, stop, usage):
                yield LLMChunk(text=piece)

    def prefill(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> int:
        """Evaluate the prompt ``messages`` would get into the KV cache; generate nothing.

        Called while the end of the caller's turn is still being decided, so the
        reply's generation finds its prompt already evaluated and samples at once.
        Returns the tokens evaluated; 0 when a generation holds the model (it
        owns the cache) or the prompt is cached already.
        """
        chat = _plain_tool_history(messages)
        offer_tools = bool(tools) and messages[-1].get("role") != "tool"
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            prompt = self._render(chat, tools if offer_tools else None)
            tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
            cached = _common_prefix(self._llm._input_ids.tolist(), tokens)
            if cached >= len(tokens):
                return 0
            self._llm.n_tokens = cached  # eval drops the KV cache past this point
            self._llm.eval(tokens[cached:])
            return len(tokens) - cached
        finally:
            self._lock.release()

    def stream_openai_chunks(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int = 200,
        temperature: float = 0.2,
        stop: threading.Event | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The same reply as OpenAI ``chat.completion.chunk`` dicts, ending with its usage."""
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": weights.LLM_MODEL,
        }
        finish = "stop"
        usage = GenerationUsage()
        for chunk in self.stream_chat(messages, tools, max_tokens, temperature, stop, usage):
            delta: dict[str, Any] = {"role": "assistant"}
            if chunk.text:
                delta["content"] = chunk.text
            if chunk.tool_calls:
                finish = "tool_calls"
                delta["tool_calls"] = [
                    {
                        "index": i,
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for i, call in enumerate(chunk.tool_calls)
                ]
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {**base, "choices": [], "usage": usage.as_openai()}

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        stop: threading.Event | None,
        usage: GenerationUsage | None = None,
    ) -> Iterator[str]:
        tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
        cached = _common_prefix(self._llm._input_ids.tolist(), tokens)
        if usage is not None:
            usage.prompt_tokens += len(tokens)
            usage.cached_tokens += cached
        started = time.perf_counter()
        stream = self._llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=["<|im_end|>"],
            stream=True,
        )
        first = True
        try:
            for part in stream:
                if first:
                    first = False
                    elapsed = (time.perf_counter() - started) * 1000
                    self.generations = [
                        *self.generations[-63:],
                        GenerationStats(len(tokens), cached, elapsed),
                    ]
                if usage is not None:
                    usage.completion_tokens += 1  # llama.cpp streams one token per part
                if stop is not None and stop.is_set():
                    return
                text = part["choices"][0]["text"]  # type: ignore[index]
                if text:
                    yield text
        finally:
            stream.close()  # type: ignore[union-attr]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _plain_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Show earlier tool calls and results to the model as notes, not as calls to repeat."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                names[call.get("id", "")] = call["function"]["name"]
            if message.get("content"):
                out.append({"role": "assistant", "content": message["content"]})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "the tool")
            out.append(
                {
                    "role": "system",
                    "content": f"The tool {name} returned: {_text(message.get('content'))}. "
                    "Use it to answer the caller now, in one short sentence.",
                }
            )
        else:
            out.append({"role": role, "content": _text(message.get("content"))})
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _parse_tool_calls(text: str, tools: list[dict[str, Any]]) -> list[ToolCall]:
    known = {t.get("function", t).get("name") for t in tools}
    calls = []
    decoder = json.JSONDecoder()
    index = 0
    while (start := text.find("{", index)) != -1:
        try:
            obj, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict) and obj.get("name") in known:
            arguments = obj.get("arguments", {})
            if isinstance(arguments, str):
                arguments = _loads_or_empty(arguments)
            calls.append(
                ToolCall(obj["name"], json.dumps(arguments), f"call_{uuid.uuid4().hex[:20]}")
            )
    return calls


def _loads_or_empty(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return {}


class PiperEngine:
    """Piper en_US-joe-medium (22.05 kHz). GPL-3.0: installed as an optional extra."""

    def __init__(self, model: Path | None = None, config: Path | None = None) -> None:
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise ModelMissingError(
                "piper-tts is not installed", hint=weights.INSTALL_HINT
            ) from exc
        if model is None or config is None:
            model, config = weights.piper_voice()
        self._voice = PiperVoice.load(str(model), config_path=str(config))
        self.sample_rate: int = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16 sentence by sentence, as Piper produces it."""
        if not text.strip():
            return
        sentences = iter(self._voice.synthesize(text))
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


@dataclass
class LocalEngines:
    """The engines one process shares between all its calls."""

    stt: WhisperEngine
    llm: LlamaEngine
    tts: SpeechEngine


def make_tts(kind: TTSEngineKind | str = TTSEngineKind.AUTO) -> SpeechEngine:
    """Build the chosen TTS engine; AUTO prefers Piper and falls back to eSpeak NG."""
    try:
        kind = TTSEngineKind(kind)
    except ValueError as exc:
        raise ConfigError(f"unknown TTS engine {kind!r}", hint="use auto, piper or espeak") from exc
    if kind is TTSEngineKind.ESPEAK:
        return EspeakEngine()
    try:
        return PiperEngine()
    except ModelMissingError:
        if kind is TTSEngineKind.PIPER:
            raise
        return EspeakEngine()


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
