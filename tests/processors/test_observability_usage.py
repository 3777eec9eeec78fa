"""Bad usage and rate-limit input through the usage observer (pipecat's ``run_test`` harness).

A usage with missing fields is priced as far as it goes and marked an upper
bound; an unpriced model is an unknown cost (counted, said so), never zero; a
rate-limit entry with missing numbers is ignored and counted.
"""

from __future__ import annotations

from decimal import Decimal

from metric_samples import sample
from pipecat.frames.frames import MetricsFrame
from pipecat.metrics.metrics import LLMTokenUsage, LLMUsageMetricsData
from pipecat.processors.filters.identity_filter import IdentityFilter
from pipecat.tests.utils import run_test

from voxpipe.observability import UsageIssue
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.prices import TokenKind
from voxpipe.processors.observability import UsageObserver, usage_from_tokens
from voxpipe.processors.observability.report import cost_section
from voxpipe.processors.realtime import RateLimit, RateLimitsUpdated, RealtimeCallEventFrame
from voxpipe.timeline import EventKind, Timeline
from voxpipe.weights import LLM_MODEL


class ManualClock:
    def __init__(self) -> None:
        self.ms = 0.0

    def now_ms(self) -> float:
        return self.ms


def usage_frame(model: str | None, **tokens: int | None) -> MetricsFrame:
    value = LLMTokenUsage(
        prompt_tokens=tokens.pop("prompt_tokens", 0) or 0,
        completion_tokens=tokens.pop("completion_tokens", 0) or 0,
        total_tokens=tokens.pop("total_tokens", 0) or 0,
        **tokens,
    )
    return MetricsFrame(data=[LLMUsageMetricsData(processor="brain", model=model, value=value)])


async def observe(*frames: object, metrics: VoxpipeMetrics | None = None) -> UsageObserver:
    observer = UsageObserver(
        ManualClock().now_ms, metrics=metrics or VoxpipeMetrics(), timeline=Timeline()
    )
    await run_test(IdentityFilter(), frames_to_send=list(frames), observers=[observer])  # type: ignore[arg-type]
    return observer


async def test_an_unpriced_model_is_an_unknown_cost_said_so_never_zero() -> None:
    metrics = VoxpipeMetrics()
    observer = await observe(
        usage_frame("qwen2.5-0.5b-instruct", prompt_tokens=120, completion_tokens=30),
        metrics=metrics,
    )
    [entry] = observer.ledger.entries
    assert entry.model == "qwen2.5-0.5b-instruct"
    assert not isinstance(entry.usd, Decimal)
    assert "not in price table" in str(entry.usd)
    section = cost_section(observer.ledger)
    assert section["statement"].startswith("unknown")
    assert section["complete"] is False
    text = metrics.render().decode()
    unpriced = sample(text, "voxpipe_unpriced_responses_total", model="qwen2.5-0.5b-instruct")
    assert unpriced == 1.0
    assert sample(text, "voxpipe_cost_usd_total") is None  # no zero dollars for it


async def test_a_usage_without_the_audio_split_is_an_upper_bound_and_flagged() -> None:
    observer = await observe(
        usage_frame("gpt-realtime", prompt_tokens=1000, completion_tokens=200, total_tokens=1200)
    )
    [entry] = observer.ledger.entries
    assert entry.is_upper_bound
    assert UsageIssue.INPUT_DETAILS_MISSING in entry.issues
    # Priced as audio, the dearer modality: 1000 * $32 + 200 * $64 per million.
    assert entry.usd == Decimal("0.0448")
    assert "upper bound" in cost_section(observer.ledger)["statement"]


async def test_a_full_realtime_usage_converts_without_loss() -> None:
    tokens = LLMTokenUsage(
        prompt_tokens=300,
        completion_tokens=90,
        total_tokens=390,
        cache_read_input_tokens=100,
        input_audio_tokens=200,
        output_audio_tokens=70,
        cache_read_input_audio_tokens=60,
    )
    usage = usage_from_tokens(tokens)
    assert usage["input_token_details"] == {
        "audio_tokens": 200,
        "text_tokens": 100,
        "cached_tokens": 100,
        "cached_tokens_details": {"audio_tokens": 60, "text_tokens": 40},
    }
    observer = await observe(usage_frame("gpt-realtime", **tokens.model_dump()))
    [entry] = observer.ledger.entries
    assert entry.issues == frozenset()
    by_hand = (
        140 * Decimal(32)
        + 60 * Decimal("0.40")
        + 60 * Decimal(4)
        + 40 * Decimal("0.40")
        + 70 * Decimal(64)
        + 20 * Decimal(16)
    ) / 1_000_000
    assert entry.usd == by_hand


async def test_a_chat_models_usage_is_text_and_priced_exactly() -> None:
    # A chat LLM in the chained slot: no audio split, and none is needed.
    tokens = LLMTokenUsage(
        prompt_tokens=500, completion_tokens=30, total_tokens=530, cache_read_input_tokens=420
    )
    # The same counts from a realtime model lack their audio/text split: it stays unknown.
    assert "input_token_details" not in usage_from_tokens(tokens, "gpt-realtime")
    assert usage_from_tokens(tokens, LLM_MODEL)["output_token_details"]["audio_tokens"] == 0
    observer = await observe(usage_frame(LLM_MODEL, **tokens.model_dump()))
    [entry] = observer.ledger.entries
    assert entry.issues == frozenset() and not entry.is_upper_bound
    assert entry.counts.of(TokenKind.TEXT_IN) == 80
    assert entry.counts.of(TokenKind.CACHED_TEXT_IN) == 420
    assert entry.counts.of(TokenKind.TEXT_OUT) == 30
    assert entry.counts.of(TokenKind.AUDIO_IN) == entry.counts.of(TokenKind.AUDIO_OUT) == 0
    assert entry.usd == 0  # the embedded model runs here: no per-token fee
    unpriced = await observe(usage_frame("gpt-4.1", **tokens.model_dump()))
    [chat] = unpriced.ledger.entries
    assert not isinstance(chat.usd, Decimal) and "gpt-4.1" in str(chat.usd)


async def test_no_usage_at_all_is_unknown_and_the_timeline_says_why() -> None:
    timeline = Timeline()
    observer = UsageObserver(ManualClock().now_ms, timeline=timeline)
    entry = observer.record_usage(None, response_id="resp_1")
    assert UsageIssue.NO_USAGE in entry.issues
    [event] = timeline.of(EventKind.COST)
    assert event.data["usd"] is None
    assert "no usable usage" in event.data["unknown_reason"]


async def test_rate_limit_entries_with_missing_numbers_are_ignored_and_counted() -> None:
    good = RateLimit("requests", 100, 5, 1.5)
    broken = RateLimit("tokens", 0, 0, 0.0)
    event = RateLimitsUpdated((good, broken))
    frame = RealtimeCallEventFrame(event=event, at_ms=0.0)
    metrics = VoxpipeMetrics()
    observer = await observe(frame, metrics=metrics)
    [warning] = observer.warnings
    assert warning.reading.remaining == 5 and "requests" in str(warning)
    text = metrics.render().decode()
    assert sample(text, "voxpipe_rate_limit_remaining_ratio", name="requests") == 0.05
    # A limit of 0 cannot run out: recorded, never a warning.
    assert all(w.reading.name.value != "tokens" for w in observer.warnings)
    observer.record_rate_limits({"rate_limits": [{"name": "tokens", "remaining": 3}]})
    assert observer.ratelimits.ignored == 1
