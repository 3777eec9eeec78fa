"""The offline engines against their real weights, on short generated clips."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from voxpipe import engines as eng
from voxpipe.evaluation import word_error_rate
from voxpipe.transports.audio_file import load_audio

pytestmark = pytest.mark.models

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city. Only for weather questions.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SYSTEM = {"role": "system", "content": "You are a voice assistant. Answer in one short sentence."}


async def test_engines_load_once_per_process_and_are_shared() -> None:
    first, second = await asyncio.gather(eng.shared_engines(), eng.shared_engines())
    assert first.stt is second.stt and first.llm is second.llm and first.tts is second.tts


@pytest.mark.parametrize(
    "text",
    ["What time does the pharmacy open tomorrow?", "Please book a table for four at eight."],
)
async def test_whisper_transcribes_generated_speech(make_speech, text: str) -> None:
    engines = await eng.shared_engines()
    audio = load_audio(make_speech(text, rate=22_050), 16_000)
    heard = engines.stt.transcribe(audio.pcm16, 16_000)
    assert word_error_rate(text, heard) < 0.1, heard


async def test_whisper_resamples_and_survives_odd_input() -> None:
    engines = await eng.shared_engines()
    assert engines.stt.transcribe(bytes(48_000 * 2), 48_000) == ""  # silence: no words
    assert engines.stt.transcribe(b"\x01", 16_000) == ""  # one odd byte
    noise = (np.random.default_rng(0).normal(0, 300, 16_000)).astype("<i2").tobytes()
    assert len(engines.stt.transcribe(noise, 16_000).split()) <= 2


async def test_llm_streams_tokens_and_answers() -> None:
    engines = await eng.shared_engines()
    user = {"role": "user", "content": "What is the capital of France?"}
    chunks = list(engines.llm.stream_chat([SYSTEM, user], max_tokens=40))
    text = "".join(c.text for c in chunks)
    assert len(chunks) > 3  # streamed, not one block
    assert "paris" in text.lower()


async def test_llm_calls_a_tool_then_answers_from_its_result() -> None:
    engines = await eng.shared_engines()
    user = {"role": "user", "content": "What's the weather in Paris?"}
    chunks = list(engines.llm.stream_chat([SYSTEM, user], [WEATHER_TOOL]))
    calls = [c for chunk in chunks for c in chunk.tool_calls]
    assert [c.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].arguments)["city"].lower() == "paris"
    follow_up = [
        SYSTEM,
        user,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0].call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": calls[0].arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"sky": "sunny", "c": 21}'},
    ]
    answer = "".join(c.text for c in engines.llm.stream_chat(follow_up, [WEATHER_TOOL]))
    assert "sunny" in answer.lower() and "21" in answer


async def test_llm_stop_event_ends_generation_early() -> None:
    import threading

    engines = await eng.shared_engines()
    stop = threading.Event()
    user = {"role": "user", "content": "Count slowly from one to one hundred."}
    pieces = []
    for chunk in engines.llm.stream_chat([SYSTEM, user], max_tokens=200, stop=stop):
        pieces.append(chunk.text)
        if len(pieces) == 3:
            stop.set()
    assert len(pieces) == 3


@pytest.mark.parametrize("kind", [eng.TTSEngineKind.PIPER, eng.TTSEngineKind.ESPEAK])
async def test_tts_speaks_text_that_whisper_can_read_back(kind: eng.TTSEngineKind) -> None:
    engines = await eng.shared_engines()
    voice = await eng.shared_tts(kind)
    text = "The pharmacy opens at nine in the morning."
    pcm = b"".join(voice.synthesize(text))
    seconds = len(pcm) / 2 / voice.sample_rate
    assert 1.5 < seconds < 6
    heard = engines.stt.transcribe(pcm, voice.sample_rate)
    limit = 0.1 if kind is eng.TTSEngineKind.PIPER else 0.5  # eSpeak is robotic
    assert word_error_rate(text, heard) <= limit, heard
    assert list(voice.synthesize("   ")) == []


async def test_a_deterministic_voice_renders_a_text_the_same_every_time() -> None:
    """Tests and evaluations replay callers: the same text must give the same audio."""
    engines = await eng.shared_engines()
    text = "Sorry, one more thing, could you say that again please?"
    fixed = eng.make_tts(eng.TTSEngineKind.PIPER, deterministic=True)
    first, second = (b"".join(fixed.synthesize(text)) for _ in range(2))
    assert first == second
    heard = engines.stt.transcribe(first, fixed.sample_rate)
    assert word_error_rate(text, heard) <= 0.1, heard  # as clear as the sampled voice
    sampled = eng.make_tts(eng.TTSEngineKind.PIPER)
    assert b"".join(sampled.synthesize(text)) != b"".join(sampled.synthesize(text))


def test_unknown_voice_is_a_clear_error() -> None:
    from voxpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown TTS engine"):
        eng.make_tts("kokoro")


def _long_call(turns: int) -> list[dict[str, str]]:
    chat: list[dict[str, str]] = [SYSTEM]
    for n in range(turns):
        chat.append(
            {"role": "user", "content": f"Note number {n}: the parcel for flat {n} is blue."}
        )
        chat.append({"role": "assistant", "content": f"Noted: parcel {n} for flat {n} is blue."})
    return chat


@pytest.fixture(scope="module")
def small_context_llm() -> eng.LlamaEngine:
    """The same model with a 512-token context: a long call overflows it in a few dozen
    turns, and a fitted prompt is quick to evaluate on a loaded machine (the shared
    engine's 4,096 tokens take minutes there)."""
    return eng.LlamaEngine(n_ctx=512)


def test_turn_100_still_answers_with_what_fits_of_the_call(
    small_context_llm: eng.LlamaEngine,
) -> None:
    # 100 turns of about 30 tokens each, many times the context, where every response
    # once failed ("Requested tokens exceed context window").
    llm = small_context_llm
    chat = [*_long_call(100), {"role": "user", "content": "What is the capital of France?"}]
    assert llm._prompt_tokens(llm._render(chat, None)) > 5 * llm.n_ctx  # it would not fit
    prompt = llm._fitted(chat, None, 40)
    assert llm._prompt_tokens(prompt) <= llm.n_ctx - 40
    assert SYSTEM["content"] in prompt  # the instructions stay
    assert "capital of France" in prompt and "Note number 99:" in prompt  # the newest stay
    assert "Note number 0:" not in prompt  # the oldest go
    text = "".join(c.text for c in llm.stream_chat(chat, max_tokens=40))
    assert "paris" in text.lower()


def test_the_cut_stays_put_across_turns_so_the_prefix_cache_holds(
    small_context_llm: eng.LlamaEngine,
) -> None:
    llm = small_context_llm
    chat = _long_call(100)
    prompts = [
        llm._fitted([*chat, {"role": "user", "content": f"Question {n}?"}], None, 40)
        for n in range(3)
    ]
    # The same oldest message kept in each: only the tail differs.
    first_kept = [p[p.index("Note number") : p.index("Note number") + 16] for p in prompts]
    assert len(set(first_kept)) == 1


def test_thread_counts_reach_llama_cpp_at_the_next_generation(
    small_context_llm: eng.LlamaEngine,
) -> None:
    from llama_cpp import llama_n_threads, llama_n_threads_batch

    llm = small_context_llm
    ctx = llm._llm.ctx
    built = (llm.n_threads, llm.n_threads_batch)
    assert (llama_n_threads(ctx), llama_n_threads_batch(ctx)) == built
    chat = [SYSTEM, {"role": "user", "content": "What is the capital of Italy?"}]
    try:
        wanted = (2, 1) if built != (2, 1) else (1, 2)
        llm.set_threads(*wanted)
        # Not while a generation could be running: only when the next one starts.
        assert (llama_n_threads(ctx), llama_n_threads_batch(ctx)) == built
        text = "".join(c.text for c in llm.stream_chat(chat, max_tokens=20))
        assert "rome" in text.lower()
        assert (llama_n_threads(ctx), llama_n_threads_batch(ctx)) == wanted
        llm.set_threads(1)  # batch: the same as decode
        assert llm.prefill([SYSTEM, {"role": "user", "content": "And of Spain?"}]) > 0
        assert (llama_n_threads(ctx), llama_n_threads_batch(ctx)) == (1, 1)
    finally:
        llm.set_threads(*built)
