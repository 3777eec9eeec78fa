"""The latency instruments on a real chained call (Whisper, Qwen, Piper) over the file transport.

On this path every boundary is observable, so every segment is measured and
they add up to the end-to-end figure; the speech-end stamp lands where the
caller really stopped speaking in the recording.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from metric_samples import sample
from pipecat.frames.frames import BotStoppedSpeakingFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed

from voxpipe.observability import Segment
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.prices import TokenKind
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import BrainKind, instrument
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.file import FileTransport
from voxpipe.weights import LLM_MODEL

pytestmark = pytest.mark.models

LEAD_MS = 500


class BotDone(BaseObserver):
    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.done = asyncio.Event()

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, BotStoppedSpeakingFrame):
            self.done.set()


def speech_end_in(recording: Path) -> float:
    """Where the voice really stops in the recording (last sample above -40 dBFS), in ms."""
    audio, rate = sf.read(str(recording), dtype="float32")
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return float(loud[-1]) / rate * 1000


@pytest.mark.usefixtures("loaded_engines")  # the caller speaks to a ready agent
async def test_a_chained_turn_is_measured_end_to_end_and_its_segments_add_up(
    make_speech, tmp_path: Path
) -> None:
    recording = make_speech("What is the capital city of Japan?", lead_ms=LEAD_MS, tail_ms=4000)
    transport = FileTransport(recording, paced=True)
    graph = build_chained_pipeline(transport, voice="piper")
    timeline = Timeline()
    metrics = VoxpipeMetrics()
    instruments = instrument(
        transport.clock.now_ms,
        brain=graph.brain,
        output=transport.output(),
        timeline=timeline,
        capture=transport,
        playback=transport,
        metrics=metrics,
    )
    done = BotDone()
    async with CallSession(graph.pipeline, observers=[*instruments.observers, done]):
        await asyncio.wait_for(done.done.wait(), 120)
    instruments.finish()

    assert instruments.latency.kind is BrainKind.TEXT
    [turn] = instruments.budgets
    assert set(turn.measured) == set(Segment), turn.as_dict()
    assert not turn.skewed
    assert turn.end_to_end_ms is not None and turn.first_audio_ms is not None
    assert abs(sum(turn.measured.values()) - turn.end_to_end_ms) < 1.0
    assert turn.unattributed_ms is not None and abs(turn.unattributed_ms) < 1.0
    assert turn.first_audio_ms <= turn.end_to_end_ms
    # The speech end is stamped on the capture clock where the voice really ended
    # (within the VAD's analysis window; +47 to +72 ms measured with a busy core).
    assert turn.stamps.speech_end_ms is not None
    really_ended = transport.input_started_ms + speech_end_in(recording)
    assert abs(turn.stamps.speech_end_ms - really_ended) < 250
    # The playback report is the first bot chunk the transport played.
    assert turn.stamps.playback_ms == transport.written[0].at_ms

    [event] = timeline.of(EventKind.TURN_LATENCY)
    assert event.data["boundaries_ms"] == turn.stamps.boundaries()
    assert event.data["segments_ms"]["inference"] == turn.segments[Segment.INFERENCE]
    rendered = metrics.render().decode()
    assert sample(rendered, "voxpipe_first_audio_seconds_count") == 1.0
    # The local LLM reports its usage under its own name, priced at zero (it runs here).
    [reply] = instruments.ledger.entries
    assert reply.model == LLM_MODEL and reply.usd == 0
    assert reply.counts.of(TokenKind.TEXT_IN) + reply.counts.of(TokenKind.CACHED_TEXT_IN) > 20
    assert reply.counts.of(TokenKind.TEXT_OUT) > 2
    assert sample(rendered, "voxpipe_tokens_total", model=LLM_MODEL, kind="text_out") == (
        reply.counts.of(TokenKind.TEXT_OUT)
    )
