"""The chained pipeline on OpenAI's HTTP services: the call works and the rate limits are read.

With a key, the STT, LLM and TTS slots are OpenAI's Whisper API, chat
completions and speech services. A loopback stand-in plays OpenAI (it is the
paid remote provider) and spends one request of its reported limits per
answer; every answer's ``x-ratelimit-*`` headers must reach the call's
rate-limit tracker, its metrics and its report, with one warning when the
remaining requests fall below the threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_openai import API_KEY, MODEL, REPLY, running_fake_openai
from metric_samples import sample

from voxpipe.evaluation import word_error_rate
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.ratelimits import RateLimitName, RateLimitSource
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.simulated_call import CallSpec, Mode, simulate_call
from voxpipe.processors.observability.usage import cost_dict
from voxpipe.processors.openai_http import HeaderedOpenAILLMService, RateLimitHeaders
from voxpipe.transports.file import FileTransport

QUESTION = "What time do you open on Saturday?"


async def test_a_chained_call_on_openai_reads_every_answers_rate_limit_headers(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = make_speech(QUESTION, lead_ms=300, tail_ms=4000)
    metrics = VoxpipeMetrics(environment="test", project="chained-openai")
    async with running_fake_openai() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
        result = await simulate_call(
            CallSpec(caller, tmp_path / "call", mode=Mode.CHAINED, metrics=metrics)
        )

    # The call went through OpenAI's three services, authorised, and was answered.
    assert fake.unauthorised == 0
    assert fake.transcripts and word_error_rate(QUESTION, fake.transcripts[0]) <= 0.15
    assert len(fake.chats) == 1
    user = [m for m in fake.chats[0]["messages"] if m["role"] == "user"]
    assert word_error_rate(QUESTION, str(user[-1]["content"])) <= 0.15
    assert word_error_rate(REPLY, " ".join(fake.spoken)) == 0
    assert len(result.graph.transport.bot_pcm()) > 24_000  # over half a second of reply
    graph = result.graph
    assert isinstance(graph.rate_limit_headers, RateLimitHeaders)
    assert graph.rate_limit_headers.answers == len(fake.sent_headers) >= 3

    # The tracker holds the last answer's figures and each limit's lowest point.
    assert result.instruments is not None
    tracker = result.instruments.ratelimits
    last = fake.sent_headers[-1]
    requests = tracker.latest[(RateLimitName.REQUESTS, RateLimitSource.HTTP)]
    tokens = tracker.latest[(RateLimitName.TOKENS, RateLimitSource.HTTP)]
    assert requests.remaining == int(last["x-ratelimit-remaining-requests"])
    assert requests.limit == 100 and requests.reset_s == pytest.approx(8.64)
    assert tokens.remaining == int(last["x-ratelimit-remaining-tokens"])
    assert tokens.reset_s == pytest.approx(360.0)
    assert tracker.low_water[(RateLimitName.REQUESTS, RateLimitSource.HTTP)] == requests

    # Requests went 11, 10, 9...% of the limit: one warning, when they first fell below 10%.
    warnings = result.instruments.usage.warnings
    assert [w.reading.name for w in warnings] == [RateLimitName.REQUESTS]
    assert warnings[0].reading.remaining == 9

    # The chat's usage is in the ledger; its model has no price here, and it says so.
    [chat] = result.instruments.ledger.entries
    priced = cost_dict(chat)
    assert chat.model == MODEL and priced["tokens"]
    assert priced["usd"] is None and MODEL in str(priced["unknown_reason"])

    # The process's metrics and the call's report say the same.
    rendered = metrics.render().decode()
    exported = sample(rendered, "voxpipe_rate_limit_remaining", name="requests", source="http")
    assert exported == requests.remaining
    report = json.loads((tmp_path / "call" / "report.json").read_text())
    low = {(r["name"], r["source"]): r for r in report["rate_limits"]["low_water"]}
    assert low[("requests", "http")]["remaining"] == requests.remaining
    assert low[("requests", "http")]["below_threshold"] is True
    assert low[("tokens", "http")]["below_threshold"] is False


def test_the_key_puts_openai_in_every_slot_and_explicit_services_win(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    import numpy as np
    import soundfile as sf

    sf.write(str(silence), np.zeros(16_000, dtype=np.float32), 16_000)
    graph = build_chained_pipeline(FileTransport(silence), openai_api_key=API_KEY)
    assert isinstance(graph.brain, HeaderedOpenAILLMService)
    assert type(graph.services["stt"]).__name__ == "OpenAISTTService"
    assert type(graph.services["tts"]).__name__ == "OpenAITTSService"
    assert graph.rate_limit_headers is not None

    from voxpipe.processors.local.llm import LocalLLMService

    local = LocalLLMService(instructions="Be brief.")
    mixed = build_chained_pipeline(FileTransport(silence), openai_api_key=API_KEY, llm=local)
    assert mixed.brain is local
    assert type(mixed.services["stt"]).__name__ == "OpenAISTTService"


def test_a_listener_that_raises_does_not_stop_the_others() -> None:
    headers = RateLimitHeaders()
    seen: list[dict[str, str]] = []

    def broken(_headers: object) -> None:
        raise RuntimeError("observer bug")

    headers.add_listener(broken)
    headers.add_listener(lambda h: seen.append(dict(h)))
    headers.observe({"X-RateLimit-Remaining-Requests": "5", "Content-Type": "text/plain"})
    headers.observe({"Content-Type": "text/plain"})  # no rate-limit headers: nobody is called
    assert seen == [{"x-ratelimit-remaining-requests": "5"}]
    assert headers.answers == 1
