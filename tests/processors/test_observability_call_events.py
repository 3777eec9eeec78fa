"""The realtime service's call events reach ``/metrics``: barge-ins and reconnects by class.

Real calls: the file transport plays real speech, the realtime service talks
to voxpipe's server over loopback; the server's fault injection closes the
socket mid-response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from metric_samples import sample
from realtime_calls import API_KEY, LONG_REPLY, compose

from voxpipe.call import BackoffConfig, CallState
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import Instruments, instrument
from voxpipe.processors.realtime import RealtimeService
from voxpipe.timeline import Timeline
from voxpipe.transports.file import FileTransport
from voxpipe.transports.metrics_http import start_metrics_server
from voxpipe.transports.realtime_server import (
    CloseMidResponse,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

LABELS = {"environment": "test", "project": "events"}


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls the transport and state machine
            await asyncio.sleep(0.05)


async def scrape(metrics: VoxpipeMetrics) -> str:
    server = await start_metrics_server(metrics, port=0)
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url) as response:
            return await response.text()
    finally:
        await server.close()


async def call_with_metrics(
    recording: Path, script: list[str], arm: Any, done: Callable[[RealtimeService], bool]
) -> tuple[VoxpipeMetrics, Instruments]:
    metrics = VoxpipeMetrics(environment="test", project="events")
    config = ServerConfig(api_key=API_KEY, fault_injection=True)
    async with running_realtime_server(config=config, brain=ScriptedBrain(script)) as srv:
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport,
            server_url=srv.realtime_url,
            api_key=API_KEY,
            backoff=BackoffConfig(initial_ms=50, max_ms=400),
        )
        service = graph.brain
        assert isinstance(service, RealtimeService)
        instruments = instrument(
            transport.clock.now_ms,
            brain=service,
            output=transport.output(),
            timeline=Timeline(),
            capture=transport,
            playback=transport,
            metrics=metrics,
        )
        if arm is not None:
            srv.arm(arm)
        session = CallSession(graph.pipeline, observers=instruments.observers, end_timeout_secs=5)
        async with session:
            await until(lambda: transport.input_finished_ms is not None, 60)
            await until(lambda: done(service))
    return metrics, instruments


async def test_a_barge_in_is_counted_as_a_recovered_interruption(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [300, "What time do you open on Saturday?", 2800, "Sorry, one more thing.", 2500],
        recording,
    )
    metrics, _ = await call_with_metrics(
        recording,
        [LONG_REPLY, "Sure."],
        None,
        lambda s: s.machine.state is CallState.LISTENING,
    )
    text = await scrape(metrics)
    assert sample(text, "voxpipe_interruptions_total", **LABELS) == 1.0
    assert not sample(text, "voxpipe_interruption_recovery_failures_total", **LABELS)
    # The cancel raced the response's end: absorbed by the protocol, not a call error.
    assert sample(text, "voxpipe_errors_total", **LABELS) is None


async def test_a_socket_closed_mid_response_is_a_reconnect_of_its_class(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [300, "What time do you open on Saturday?", 3500, "And on Sunday?", 3500],
        recording,
    )
    metrics, instruments = await call_with_metrics(
        recording,
        ["We open at nine on Saturday morning.", "On Sunday we are closed."],
        CloseMidResponse(code=1011),
        lambda s: s.machine.state is CallState.LISTENING,
    )
    text = await scrape(metrics)
    reconnects = sample(text, "voxpipe_reconnects_total", failure_class="transport", **LABELS)
    assert reconnects == 1.0
    # The responses that completed were priced; the one cut by the close never reported usage.
    assert instruments.ledger.entries and instruments.ledger.total.is_complete
