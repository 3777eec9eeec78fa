"""``/metrics`` over a real aiohttp server on a loopback port, scraped like Prometheus does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from voxpipe.observability.cost import CostLedger
from voxpipe.observability.latency import TurnStamps, budget
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.transports.metrics_http import (
    MetricsServer,
    metrics_handler,
    start_metrics_server,
)

USAGE = {
    "input_tokens": 200,
    "output_tokens": 300,
    "input_token_details": {"audio_tokens": 200, "text_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"audio_tokens": 300, "text_tokens": 0},
}  # 200 * $32 + 300 * $64 per 1M = $0.0256 per response


@pytest.fixture
async def served() -> AsyncIterator[tuple[VoxpipeMetrics, MetricsServer]]:
    metrics = VoxpipeMetrics(environment="staging", project="acme")
    server = await start_metrics_server(metrics, port=0)
    yield metrics, server
    await server.close()


async def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labels(**extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"environment": "staging", "project": "acme", **extra}.items())


async def test_scripted_call_shows_up_on_metrics(
    served: tuple[VoxpipeMetrics, MetricsServer],
) -> None:
    metrics, server = served
    assert server.port != 0
    ledger = CostLedger()
    # A scripted two-turn call: one fast turn, one slow turn with a barge-in.
    for stamps in (
        TurnStamps(0, 20, None, 700, 720, 800),
        TurnStamps(10_000, 10_020, None, 11_900, 11_950, None),
    ):
        metrics.observe_turn(budget(stamps))
        metrics.record_cost(ledger.record(f"resp_{stamps.speech_end_ms}", USAGE))
    metrics.record_interruption()
    metrics.record_guardrail_trip("deny")

    samples = await _scrape(server.url)

    assert samples[("voxpipe_first_audio_seconds_count", _labels())] == 2
    assert samples[("voxpipe_first_audio_seconds_sum", _labels())] == pytest.approx(2.67)
    assert samples[("voxpipe_first_audio_seconds_bucket", _labels(le="1.5"))] == 1
    assert samples[("voxpipe_end_to_end_seconds_count", _labels())] == 1
    assert samples[("voxpipe_interruptions_total", _labels())] == 1
    assert samples[("voxpipe_guardrail_trips_total", _labels(policy="deny"))] == 1
    cost = samples[("voxpipe_cost_usd_total", _labels(model="gpt-realtime"))]
    assert cost == pytest.approx(float(ledger.total.known_usd)) == pytest.approx(0.0512)


async def test_scrapes_see_live_values(served: tuple[VoxpipeMetrics, MetricsServer]) -> None:
    metrics, server = served
    metrics.record_rollover()
    first = await _scrape(server.url)
    metrics.record_rollover()
    second = await _scrape(server.url)
    key = ("voxpipe_rollovers_total", _labels())
    assert (first[key], second[key]) == (1, 2)


async def test_handler_mounts_on_an_existing_app() -> None:
    metrics = VoxpipeMetrics(environment="staging", project="acme")
    metrics.record_token_rotation(ok=False)
    app = web.Application()
    app.router.add_get("/internal/metrics", metrics_handler(metrics))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        samples = await _scrape(f"http://127.0.0.1:{port}/internal/metrics")
        assert samples[("voxpipe_token_rotation_failures_total", _labels())] == 1
    finally:
        await runner.cleanup()
