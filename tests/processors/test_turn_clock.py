"""Local turns end on the caller's pause as heard in their audio, however fast the audio comes.

Real speech (the local voice), pipecat's user aggregator with the local turn
settings (:class:`~voxpipe.pipelines.chained.TurnSettings`, realtime mode: no
transcripts), fed by the file transport *unpaced*: the recording arrives as
fast as the aggregator takes it, as a paced call's audio does when the
aggregator catches up after falling behind under load. A 3 s pause between
two lines then passes in a fraction of a second of wall time; pipecat's
wall-clock speech timeout never ran out in it and the two lines made one turn
(the local VAD barge-in test failed that way at load 6-8).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from realtime_calls import compose

from voxpipe.pipelines.chained import TurnSettings
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.local.turn_clock import CallerSilenceVAD
from voxpipe.transports.file import FileTransport


async def _turns(recording: Path, settings: TurnSettings) -> list[str]:
    """The aggregator's turn events over the unpaced recording."""
    transport = FileTransport(recording, paced=False, trailing_silence_ms=2_000)
    params = settings.user_params()
    pair = LLMContextAggregatorPair(LLMContext(), user_params=params, realtime_service_mode=True)
    user = pair.user()
    events: list[str] = []

    @user.event_handler("on_user_turn_started")
    async def _started(_aggregator: Any, _strategy: Any) -> None:
        events.append("started")

    @user.event_handler("on_user_turn_stopped")
    async def _stopped(_aggregator: Any, _strategy: Any, _message: Any) -> None:
        events.append("stopped")

    vad = params.vad_analyzer
    assert isinstance(vad, CallerSilenceVAD)
    async with CallSession(Pipeline([transport.input(), user]), end_timeout_secs=5):
        async with asyncio.timeout(60):
            # Until the trailing silence is analysed (it is the last audio the VAD gets).
            while transport.input_finished_ms is None or (vad.quiet_ms or 0) < 1_500:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # More than the timeout of wall time too: pipecat's timer would have run out by now.
        await asyncio.sleep(1.0)
    return events


async def test_a_pause_heard_in_the_audio_ends_the_turn_when_the_audio_comes_fast(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [300, "What time do you open on Saturday?", 3000, "Sorry, one more thing.", 300],
        recording,
    )
    events = await _turns(recording, TurnSettings())
    # Each line was a turn of its own, ended in the pause after it.
    assert events == ["started", "stopped", "started", "stopped"]


async def test_a_pause_shorter_than_the_timeout_does_not_end_the_turn(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [300, "What time do you open", 250, "on Saturday?", 300],
        recording,
    )
    events = await _turns(recording, TurnSettings())
    # 250 ms of pause is far less than the VAD's 0.2 s stop plus the 0.6 s timeout: one turn.
    assert events == ["started", "stopped"]
