"""Interruptions against the real server: the audio stops, the response is cancelled,
the item is truncated at what the output transport played, nothing more is heard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from realtime_calls import LONG_REPLY, compose, realtime_call

from voxpipe.call import CallState, InterruptionSource, StateChanged, TransitionRejected
from voxpipe.errors import FatalProviderError
from voxpipe.pipelines.chained import TurnSettings
from voxpipe.processors.realtime import (
    InterruptionHandled,
    ItemTruncated,
    ProviderErrorSeen,
    ResponseCreated,
)

# What the output transport had already taken still plays: the file transport
# records the interruption (and bumps its epoch) before pipecat's base output
# resets its audio queue, and a chunk taken in between is written. Under load
# that is one to three 20 ms chunks, all pushed by the service before the stop;
# the service's own guarantee is checked on its pushes
# (Recorder.audio_after_interruption must be 0).
OUTPUT_RACE_CHUNKS = 0


def _frames_after(call: Any, item_id: str, after_ms: float) -> int:
    """Bot audio chunks written after ``after_ms`` that are not a later item's."""
    earlier_items = {w.utterance for w in call.transport.written if w.at_ms <= after_ms}
    return sum(
        1
        for w in call.transport.written
        if w.at_ms > after_ms and (w.utterance in earlier_items or not w.utterance)
    )


def _check_nothing_after(call: Any, truncated: ItemTruncated) -> None:
    # Nothing of the cancelled response left the service after the interruption...
    assert call.recorder.audio_after_interruption() == 0
    # ...and the caller heard at most what the output transport already had in hand.
    stopped = _stopped_at(call, truncated.item_id)
    late = [w for w in call.transport.written if w.at_ms > stopped - 100][:6]
    assert _frames_after(call, truncated.item_id, stopped) <= OUTPUT_RACE_CHUNKS, (
        stopped,
        call.transport.interruptions_ms,
        late,
    )


def _stopped_at(call: Any, item_id: str) -> float:
    """When the output transport took the interruption that cut ``item_id``."""
    began = min(w.at_ms for w in call.transport.written if w.utterance == item_id)
    return min(t for t in call.transport.interruptions_ms if t > began)


def _check_truncation(call: Any, truncated: ItemTruncated) -> None:
    heard = call.transport.playback.played_ms(truncated.item_id, call.transport.clock.now_ms())
    assert truncated.audio_end_ms <= truncated.received_ms
    # What the truncate says was heard is what the output transport really played.
    assert abs(truncated.audio_end_ms - heard) <= 25, (truncated, heard)
    assert not [e for e in call.of(ProviderErrorSeen) if "shorter" in e.message]


async def test_barge_in_cancels_truncates_and_plays_nothing_more(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    spans = compose(
        make_speech,
        [300, "What time do you open on Saturday?", 2800, "Sorry, one more thing.", 2500],
        recording,
    )
    async with realtime_call(recording, script=[LONG_REPLY, "Sure."]) as call:
        await call.input_done()
        await call.wait_event(ItemTruncated)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)

    interruption = call.of(InterruptionHandled)[0]
    assert interruption.source is InterruptionSource.SERVER_VAD
    assert interruption.cancel_sent  # explicit response.cancel even with server VAD on
    truncated = call.of(ItemTruncated)[0]
    assert truncated.item_id == interruption.item_id
    assert 300 < truncated.audio_end_ms < truncated.received_ms  # cut mid-answer
    _check_truncation(call, truncated)
    stopped_at = _stopped_at(call, truncated.item_id)
    _check_nothing_after(call, truncated)
    # The bot was cut within a second of the caller starting to talk.
    onset = call.transport.input_started_ms + spans[1][0]
    assert stopped_at - onset < 1000
    states = [e.current for e in call.of(StateChanged)]
    assert CallState.SPEAKING in states and CallState.CANCELLING in states
    assert not call.of(TransitionRejected)
    assert call.service.is_usable and not [
        e for e in call.recorder.errors if isinstance(e.exception, FatalProviderError)
    ]


class CutAfter(FrameProcessor):
    """A guardrail stand-in after the brain: interrupts after ``n`` bot audio frames."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.seen = 0
        self.after_cut = 0
        self.cut = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            if self.cut:
                self.after_cut += 1
                return  # counted, and never let through
            self.seen += 1
            if self.seen == self.n:
                self.cut = True
                await self.broadcast_interruption()
                return
        await self.push_frame(frame, direction)


async def test_a_processor_interrupt_cancels_with_server_vad_on(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Tell me about your opening hours.", 4000], recording)
    tap = CutAfter(8)
    async with realtime_call(recording, tap=tap) as call:
        await call.wait_event(ItemTruncated)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)
        await call.input_done()

    interruption = call.of(InterruptionHandled)[0]
    assert interruption.source is InterruptionSource.PROCESSOR
    assert interruption.cancel_sent
    # The stock service keeps streaming here; ours stops at the brain.
    assert tap.after_cut == 0
    truncated = call.of(ItemTruncated)[0]
    _check_truncation(call, truncated)
    _check_nothing_after(call, truncated)
    # One response only: the cancelled one; nothing else was created after it.
    assert len(call.of(ResponseCreated)) == 1


async def test_an_application_interrupt_cancels_and_truncates(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Tell me about your opening hours.", 5000], recording)
    async with realtime_call(recording, pace=1.5) as call:
        await call.wait_for(lambda: len(call.transport.written) > 40)  # 0.8 s heard
        await call.service.interrupt()
        await call.wait_event(ItemTruncated)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)

    interruption = call.of(InterruptionHandled)[0]
    assert interruption.source is InterruptionSource.APPLICATION
    assert interruption.cancel_sent
    truncated = call.of(ItemTruncated)[0]
    _check_truncation(call, truncated)
    _check_nothing_after(call, truncated)


async def test_a_local_vad_barge_in_cancels_with_server_vad_off(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [300, "What time do you open on Saturday?", 3000, "Sorry, one more thing.", 2500],
        recording,
    )
    script = [LONG_REPLY, "Sure."]
    # The reply (~11 s) streams at real time, so it is still streaming when the caller
    # speaks again ~3 s into it, and the barge-in has a response to cancel. At 4x it was
    # done streaming after ~2.8 s: the barge-in came during playout (nothing to cancel,
    # cancel_sent False) 2 of 3 runs at load 8-10 while the VAD ran behind.
    async with realtime_call(
        recording, script=script, local_turns=TurnSettings(), pace=1.0
    ) as call:
        await call.wait_event(ItemTruncated, timeout_s=30)
        await call.wait_event(ResponseCreated, 2)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)

    interruption = call.of(InterruptionHandled)[0]
    assert interruption.source is InterruptionSource.LOCAL_VAD
    assert interruption.cancel_sent
    truncated = call.of(ItemTruncated)[0]
    _check_truncation(call, truncated)
    _check_nothing_after(call, truncated)
    assert (
        call.service.call.record.user_turns_committed == 2
    )  # both turns committed by us, not the server
