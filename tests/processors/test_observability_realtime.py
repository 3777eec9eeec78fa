"""The instruments on a real realtime call: voxpipe's server (scripted brain) over loopback.

What a user would check: the cost the report gives equals the usage the server
billed, priced by hand; ``/metrics`` over a real aiohttp server shows it, the
rate limits the server sent and the turn; the turn's five segments are all
measured (the server VAD's speech end is mapped back to the caller's audio) and
add up to the end-to-end time; what a transport cannot report stays unknown.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from metric_samples import sample
from pipecat.frames.frames import MetricsFrame
from pipecat.metrics.metrics import LLMTokenUsage, LLMUsageMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed

from voxpipe.observability import Segment
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import BrainKind, Instruments, instrument
from voxpipe.processors.realtime import RateLimitsUpdated, RealtimeService
from voxpipe.realtime_server.rate_limits import RateLimitPolicy
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.file import FileTransport
from voxpipe.transports.metrics_http import start_metrics_server
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

API_KEY = "test-key"
REPLY = "Hello there. The pharmacy opens at nine."
# gpt-realtime list prices, USD per million tokens (PROTOCOL.md).
AUDIO_IN, CACHED_AUDIO_IN, AUDIO_OUT = Decimal(32), Decimal("0.40"), Decimal(64)
TEXT_IN, CACHED_TEXT_IN, TEXT_OUT = Decimal(4), Decimal("0.40"), Decimal(16)


class UsageSeen(BaseObserver):
    """Keeps the raw usage pipecat reported from each ``response.done``."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.usages: list[LLMTokenUsage] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, MetricsFrame):
            for item in data.frame.data:
                if isinstance(item, LLMUsageMetricsData):
                    self.usages.append(item.value)


def hand_priced(u: LLMTokenUsage) -> Decimal:
    """What a response costs, from its usage and the published price list."""
    audio_in = u.input_audio_tokens or 0
    text_in = u.prompt_tokens - audio_in
    cached = u.cache_read_input_tokens or 0
    cached_audio = u.cache_read_input_audio_tokens or 0
    cached_text = cached - cached_audio
    audio_out = u.output_audio_tokens or 0
    text_out = u.completion_tokens - audio_out
    usd = (
        (audio_in - cached_audio) * AUDIO_IN
        + cached_audio * CACHED_AUDIO_IN
        + (text_in - cached_text) * TEXT_IN
        + cached_text * CACHED_TEXT_IN
        + audio_out * AUDIO_OUT
        + text_out * TEXT_OUT
    )
    return usd / 1_000_000


async def run_call(
    recording: Path, *, metrics: VoxpipeMetrics, warn_below: float, paced: bool = True
) -> tuple[Instruments, UsageSeen, list[RateLimitsUpdated], FileTransport]:
    config = ServerConfig(api_key=API_KEY, rate_limits=RateLimitPolicy(tokens_per_minute=6_000))
    brain = ScriptedBrain([REPLY], pace=4.0)
    async with running_realtime_server(config=config, brain=brain) as srv:
        transport = FileTransport(recording, paced=paced)
        graph = build_realtime_pipeline(transport, server_url=srv.realtime_url, api_key=API_KEY)
        service = graph.brain
        assert isinstance(service, RealtimeService)
        limits: list[RateLimitsUpdated] = []

        @service.event_handler("on_call_event")
        async def _on_event(_s: RealtimeService, event: object) -> None:
            if isinstance(event, RateLimitsUpdated):
                limits.append(event)

        timeline = Timeline()
        instruments = instrument(
            transport.clock.now_ms,
            brain=service,
            output=transport.output(),
            timeline=timeline,
            capture=transport,
            playback=transport,
            metrics=metrics,
            warn_below=warn_below,
        )
        seen = UsageSeen()
        session = CallSession(
            graph.pipeline, observers=[*instruments.observers, seen], end_timeout_secs=5
        )
        async with session, asyncio.timeout(40):
            # The usage arrives with response.done; the answer's first written chunk
            # is the turn's playback stamp, which a loaded output may write after it.
            while not (seen.usages and transport.written):  # noqa: ASYNC110 - polls records
                await asyncio.sleep(0.05)
        instruments.finish()
        return instruments, seen, limits, transport


async def test_a_scripted_call_costs_what_its_usage_prices_to_and_metrics_show_it(
    make_speech, tmp_path: Path
) -> None:
    recording = make_speech("Hello, when does the pharmacy open?", lead_ms=400, tail_ms=2500)
    metrics = VoxpipeMetrics(environment="test", project="obs")
    instruments, seen, limits, _ = await run_call(recording, metrics=metrics, warn_below=0.5)

    # Cost: exactly the hand-priced usage the server reported.
    expected = sum((hand_priced(u) for u in seen.usages), Decimal(0))
    assert expected > 0
    assert instruments.ledger.total.known_usd == expected
    assert instruments.ledger.total.is_complete
    assert [e.model for e in instruments.ledger.entries] == ["gpt-realtime"] * len(seen.usages)

    # Rate limits: the server's tokens limit of 6000/min is mostly reserved by one
    # response, so the tracker warns, and its low-water mark is the server's figure.
    assert limits, "the server sends rate_limits.updated at each response"
    sent = {x.name: x for x in limits[-1].limits}
    low = {r.name.value: r for r in instruments.ratelimits.low_water.values()}
    assert low["tokens"].remaining == min(
        {x.name: x for x in update.limits}["tokens"].remaining for update in limits
    )
    assert low["tokens"].limit == sent["tokens"].limit == 6_000
    assert [w.reading.name.value for w in instruments.usage.warnings] == ["tokens"]

    # /metrics over a real HTTP server.
    server = await start_metrics_server(metrics, port=0)
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url) as response:
            assert response.status == 200
            text = await response.text()
    finally:
        await server.close()
    base = {"environment": "test", "project": "obs"}
    cost = sample(text, "voxpipe_cost_usd_total", model="gpt-realtime", **base)
    assert cost == pytest.approx(float(expected), rel=1e-9)  # Prometheus adds floats
    remaining = sample(
        text, "voxpipe_rate_limit_remaining", name="tokens", source="realtime", **base
    )
    assert remaining == float(sent["tokens"].remaining)
    inference = sample(text, "voxpipe_latency_segment_seconds_count", segment="inference", **base)
    assert inference == 1.0


async def test_the_realtime_path_measures_every_segment_of_a_server_vad_turn(
    make_speech, tmp_path: Path
) -> None:
    recording = make_speech("Hello, when does the pharmacy open?", lead_ms=400, tail_ms=2500)
    instruments, _, _, transport = await run_call(
        recording, metrics=VoxpipeMetrics(), warn_below=0.1
    )
    assert instruments.latency.kind is BrainKind.SPEECH
    [turn] = instruments.budgets
    # The server VAD's speech end, mapped back to the caller's frame: capture and uplink known.
    capture, uplink = turn.segments[Segment.CAPTURE], turn.segments[Segment.UPLINK]
    # One frame's transit; the bounds and why load cannot break them are explained
    # in test_observability_server_vad (CAPTURE_MIN_MS, CAPTURE_MAX_MS).
    assert capture is not None and -1 < capture < 400, turn.as_dict()
    # Speech end to the first response event holds the server's 500 ms silence wait
    # (uplink alone shrinks when a frame held up by event-loop lag is caught up).
    assert uplink is not None and capture + uplink > 400, turn.as_dict()
    assert turn.end_to_end_ms is not None and turn.first_audio_ms is not None
    assert abs(sum(turn.measured.values()) - turn.end_to_end_ms) < 1e-6
    # Response created -> first delta -> handed to output -> played: all measured, in order.
    stamps = turn.stamps
    assert stamps.server_received_ms is not None and stamps.playback_ms is not None
    for segment in (Segment.INFERENCE, Segment.DOWNLINK, Segment.PLAYBACK):
        measured = turn.segments[segment]  # 0 is measured: one push hands audio to the output
        assert measured is not None and measured >= 0, turn.as_dict()
    server_side = sum(turn.segments[s] or 0.0 for s in (Segment.INFERENCE, Segment.DOWNLINK))
    played = server_side + (turn.segments[Segment.PLAYBACK] or 0.0)
    assert abs(played - (stamps.playback_ms - stamps.server_received_ms)) < 1e-6
    # The paced transport's playback report is the bot audio's first chunk on the wire.
    assert stamps.playback_ms == transport.written[0].at_ms
    timeline_turns = instruments.timeline.of(EventKind.TURN_LATENCY)
    assert [e.data["boundaries_ms"] for e in timeline_turns] == [stamps.boundaries()]


async def test_an_unpaced_transport_gives_no_playback_report_so_playback_is_unknown(
    make_speech, tmp_path: Path
) -> None:
    recording = make_speech("Hello, when does the pharmacy open?", lead_ms=400, tail_ms=2500)
    instruments, _, _, transport = await run_call(
        recording, metrics=VoxpipeMetrics(), warn_below=0.1, paced=False
    )
    [turn] = instruments.budgets
    assert transport.written, "the bot's audio was written"
    assert turn.stamps.first_audio_written_ms is not None
    assert turn.stamps.playback_ms is None
    assert turn.segments[Segment.PLAYBACK] is None  # unknown, not zero
    assert turn.segments[Segment.DOWNLINK] is not None
