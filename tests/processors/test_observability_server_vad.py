"""Turn latency on the realtime path when the server's VAD ends each turn.

A real call: the paced file transport plays a recording of real speech (local
TTS) with known spans, the realtime service talks to voxpipe's own Realtime
server over loopback, and that server's VAD (Silero) decides where each turn
ended. ``input_audio_buffer.speech_stopped`` carries only a position on the
session's audio line; the service maps it back to the caller's frame, so
capture and uplink are measured, and where no frame exists (audio replayed
into a new session) the speech end stays unknown.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime_calls import API_KEY, compose

from voxpipe.call import BackoffConfig
from voxpipe.observability import LatencyBudget, Segment
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability import LatencyObserver
from voxpipe.processors.realtime import (
    CallEvent,
    Reconnecting,
    ResponseCreated,
    ServerSpeechStopped,
)
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    RefuseNextConnection,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

QUESTIONS: list[str | int] = [
    400,
    "What time do you open on Saturday?",
    3500,
    "And on Sunday?",
    3500,
]
REPLIES = ["We open at nine on Saturday morning.", "On Sunday we are closed."]
# The speech end is a position on the audio line mapped back to a caller frame's
# capture slot, so no clock is in it and load cannot stretch it. What moves it:
# Silero's 32 ms frames and hysteresis, TTS tails, and pipecat's VHQ stream
# resampler (16 -> 24 kHz), which hands over audio in ~69 ms bursts every fourth
# frame, so an append (and the frame it is stamped with) holds up to ~50 ms of
# audio captured before that frame. Measured: -102 to +28 ms, idle or with a busy
# core. Dropping the 500 ms silence from the position would be off by 500.
SPEECH_END_TOLERANCE_MS = 300
# Capture is one frame's transit from its capture slot to the socket: 0-4 ms idle,
# 0-2 ms with a busy core. What stretches it is event-loop lag (the paced input
# wakes late, each pipeline hop waits its turn, a GC pause in a process holding
# the models), so the bound leaves two orders of magnitude for that, and stays
# under the server's 500 ms silence window: a send stamped when the server
# decided, instead of the speech-end frame's own, is at least that late.
CAPTURE_MAX_MS = 400
# The realtime core stamps sends in whole milliseconds (the service passes
# int(now_ms)), so a frame out within the millisecond of its slot reads up to
# 1 ms early (-0.07 ms seen); the budget then also lists capture as skewed.
CAPTURE_MIN_MS = -1


@dataclass
class Measured:
    budgets: list[LatencyBudget]
    events: list[CallEvent]
    transport: FileTransport


async def _measure(
    recording: Path, *, responses: int, refuse_first: bool = False, **build: Any
) -> Measured:
    config = ServerConfig(api_key=API_KEY, fault_injection=True)
    async with running_realtime_server(
        config=config, brain=ScriptedBrain(REPLIES, pace=4.0)
    ) as srv:
        if refuse_first:
            srv.arm(RefuseNextConnection())
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=srv.realtime_url, api_key=API_KEY, **build
        )
        events: list[CallEvent] = []

        @graph.brain.event_handler("on_call_event")
        async def _on_event(_s: Any, event: CallEvent) -> None:
            events.append(event)

        latency = LatencyObserver(
            transport.clock.now_ms,
            brain=graph.brain,
            output=transport.output(),
            capture=transport,
            playback=transport,
        )
        session = CallSession(graph.pipeline, observers=[latency], end_timeout_secs=5)

        def every_answer_played() -> bool:
            # Each answer's first chunk reached the ear: its turn's playback stamp exists.
            created = len([e for e in events if isinstance(e, ResponseCreated)])
            played = {w.utterance for w in transport.written if w.utterance is not None}
            return created >= responses and len(played) >= responses

        async with session, asyncio.timeout(60):
            while not every_answer_played():  # noqa: ASYNC110 - polls the transport's record
                await asyncio.sleep(0.05)
        latency.finish()
        return Measured(latency.turns, events, transport)


def _answered(budgets: list[LatencyBudget]) -> list[LatencyBudget]:
    return [b for b in budgets if b.stamps.server_received_ms is not None]


def _adds_up(turn: LatencyBudget) -> bool:
    chain = [ms for ms in turn.stamps.chain() if ms is not None]
    total = sum(turn.measured.values()) + (turn.unattributed_ms or 0.0)
    assert turn.end_to_end_ms is not None
    return abs(total - (chain[-1] - chain[0])) < 1.0 and abs(total - turn.end_to_end_ms) < 1.0


async def test_server_vad_turns_get_capture_and_uplink_from_the_speech_stopped_position(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    spans = compose(make_speech, QUESTIONS, recording)
    run = await _measure(recording, responses=2)

    stopped = [e for e in run.events if isinstance(e, ServerSpeechStopped)]
    assert len(stopped) == 2 and all(e.frame_id is not None for e in stopped)
    assert all(e.silence_ms == 500 for e in stopped)  # the session's server_vad setting
    turns = _answered(run.budgets)
    assert len(turns) == 2, [t.as_dict() for t in run.budgets]
    started = run.transport.input_started_ms
    captures, uplinks, errors = [], [], []
    for turn, (_, span_end_ms) in zip(turns, spans, strict=True):
        capture, uplink = turn.segments[Segment.CAPTURE], turn.segments[Segment.UPLINK]
        assert capture is not None and uplink is not None, turn.as_dict()
        assert CAPTURE_MIN_MS < capture < CAPTURE_MAX_MS, turn.as_dict()
        # Speech end to the first response event holds the server's 500 ms silence
        # wait: the paced input never hands over audio before its slot, so no load
        # shortens it (an uplink alone does shrink when a late frame is caught up).
        assert capture + uplink > 400, turn.as_dict()
        assert turn.stamps.speech_end_ms is not None
        heard_end = turn.stamps.speech_end_ms - started
        assert abs(heard_end - span_end_ms) < SPEECH_END_TOLERANCE_MS, (heard_end, span_end_ms)
        errors.append(round(heard_end - span_end_ms))
        assert _adds_up(turn)
        assert turn.skewed <= {Segment.CAPTURE}  # see CAPTURE_MIN_MS; nothing else
        captures.append(capture)
        uplinks.append(uplink)
    print(
        f"\nserver VAD turns: capture median {statistics.median(captures):.1f} ms, "
        f"uplink median {statistics.median(uplinks):.1f} ms, "
        f"speech end minus true end {errors} ms"
    )


async def test_a_speech_end_in_replayed_audio_stays_unknown(
    make_speech: Any, tmp_path: Path
) -> None:
    # The first handshake is refused and the reconnect waits 4 s: the whole question
    # is held and replayed into the session at once, so no caller frame holds its end.
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "What time do you open on Saturday?", 5000], recording)
    slow = BackoffConfig(initial_ms=4_000, jitter=0.0)
    run = await _measure(recording, responses=1, refuse_first=True, backoff=slow)

    [stopped] = [e for e in run.events if isinstance(e, ServerSpeechStopped)]
    assert stopped.audio_end_ms > 0
    assert (stopped.frame_id, stopped.offset_ms, stopped.sent_at_ms) == (None, None, None)
    assert [e for e in run.events if isinstance(e, Reconnecting)], "the refusal was retried"
    [turn] = _answered(run.budgets)
    assert turn.stamps.speech_end_ms is None and turn.stamps.sent_ms is None
    assert turn.segments[Segment.CAPTURE] is None and turn.segments[Segment.UPLINK] is None
    assert turn.end_to_end_ms is None  # nothing invented
    assert turn.segments[Segment.INFERENCE] is not None
