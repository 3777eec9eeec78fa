"""The realtime client core over a long call: what it remembers stays bounded (issue 19).

600 server-VAD turns (an hour and more of a busy call), every other reply cut
by the caller mid-chunk: the ledger, the session audio log, the cancelled
responses and the remembered item ids stay within their bounds, and the last
cut is still truncated exactly where the output said playback stood.
"""

from __future__ import annotations

import base64

from call_script import CONNECT, created, done, new_call
from openai.types.realtime import (
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
)

from voxpipe.call import InterruptionSource, RealtimeCall
from voxpipe.call.commands import SendEvent
from voxpipe.call.realtime_call import DROPPING_KEPT
from voxpipe.call.record import REMEMBERED_IDS

CHUNK_MS = 200
TURNS = 600
AUDIO_DELTA = "response.output_audio.delta"


def event_of(model: type, **fields: object) -> object:
    return model.model_validate({"event_id": "evt", **fields})  # type: ignore[attr-defined]


def _turn(call: RealtimeCall, n: int, now: int) -> tuple[int, int | None]:
    """One turn at ``now``: the time after it and, if it was cut, the truncation sent."""
    user, response, item = f"user_{n}", f"resp_{n}", f"item_{n}"
    for _ in range(10):  # a second of the caller
        call.user_audio(bytes(100 * 48), n, now)
        now += 100
    call.server_event(
        event_of(
            InputAudioBufferSpeechStartedEvent,
            type="input_audio_buffer.speech_started",
            audio_start_ms=0,
            item_id=user,
        ),
        now,
    )
    call.server_event(
        event_of(
            InputAudioBufferSpeechStoppedEvent,
            type="input_audio_buffer.speech_stopped",
            audio_end_ms=now,
            item_id=user,
        ),
        now,
    )
    call.server_event(
        event_of(InputAudioBufferCommittedEvent, type="input_audio_buffer.committed", item_id=user),
        now,
    )
    created(response)(call, now)
    chunk = base64.b64encode(bytes(CHUNK_MS * 48)).decode()
    fields = {"response_id": response, "item_id": item, "output_index": 0, "content_index": 0}
    call.ledger.utterance_began(item, now)
    cut = n % 2 == 1
    for _ in range(10):  # two seconds of answer, each chunk played as it comes
        call.server_event(
            event_of(
                ResponseAudioDeltaEvent, type="response.output_audio.delta", delta=chunk, **fields
            ),
            now,
        )
        call.server_event(
            event_of(
                ResponseAudioTranscriptDeltaEvent,
                type="response.output_audio_transcript.delta",
                delta="word ",
                **fields,
            ),
            now,
        )
        call.ledger.chunk_started(CHUNK_MS, now)
        now += CHUNK_MS
    truncated = None
    if cut:
        now -= CHUNK_MS // 2  # mid-way through the last chunk: 1,900 ms heard
        call.output_stopped(now)
        commands = call.interrupt(InterruptionSource.PROCESSOR, now, as_frame=True)
        sent = [c.event for c in commands if isinstance(c, SendEvent)]
        truncated = next(e.audio_end_ms for e in sent if e.type == "conversation.item.truncate")
    done(response, "cancelled" if cut else "completed", (item,))(call, now)
    for _ in range(3):
        now += 100
        call.tick(now)
    return now + 500, truncated


def test_a_long_call_remembers_a_bounded_amount_and_still_truncates_exactly() -> None:
    call = new_call()  # strict: an illegal transition would raise
    for at, action, _ in CONNECT:
        action(call, at)
    now = 100
    truncations = []
    for n in range(TURNS):
        now, truncated = _turn(call, n, now)
        if truncated is not None:
            truncations.append(truncated)
    assert len(truncations) == TURNS // 2
    assert set(truncations) == {1_900}  # the last cut as exact as the first
    assert len(call._dropping) <= DROPPING_KEPT
    assert len(call.record._remembered) <= REMEMBERED_IDS
    assert len(call.ledger._items) <= 64
    assert len(call.sent_audio) <= 60_000 // 100 + 1  # the last minute of 100 ms appends
    assert call.record.user_turns_committed == TURNS
