"""The sans-I/O session: client events in, server events and effects out, no sockets."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from voxpipe.realtime_server.effects import (
    AudioProduced,
    BrainStartRequested,
    BrainStopRequested,
    CloseRequested,
    FunctionCallProduced,
    TextProduced,
    TranscriptionRequested,
    VadScoringRequested,
)
from voxpipe.realtime_server.ids import IdFactory
from voxpipe.realtime_server.session import RealtimeSession


def session() -> RealtimeSession:
    s = RealtimeSession(model="gpt-realtime", ids=IdFactory("t"), now_ms=0)
    s.start()
    return s


def send(s: RealtimeSession, event: dict[str, Any], now_ms: int = 0) -> list[Any]:
    return s.receive(json.dumps(event), now_ms)


def types(outputs: list[Any]) -> list[str]:
    return [getattr(o, "type", type(o).__name__) for o in outputs]


def start_response(s: RealtimeSession) -> str:
    outputs = send(s, {"type": "response.create"})
    assert types(outputs) == ["response.created", "rate_limits.updated", "BrainStartRequested"]
    return str(outputs[-1].response_id)


def test_a_spoken_response_has_the_full_ga_sequence() -> None:
    s = session()
    rid = start_response(s)
    events = s.brain_output(rid, TextProduced("Hi "), 0)
    events += s.brain_output(rid, AudioProduced(bytes(4800)), 0)
    events += s.brain_finished(rid, 10)
    assert types(events) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = events[-1].response
    assert (done.status, done.output[0].content[0].transcript) == ("completed", "Hi ")
    assert done.usage.output_token_details.audio_tokens == 2  # 100 ms out


def test_function_call_response() -> None:
    s = session()
    rid = start_response(s)
    events = s.brain_output(rid, FunctionCallProduced("f", '{"a": 1}', "call_1"), 0)
    events += s.brain_finished(rid, 0)
    assert types(events) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    send(
        s,
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        },
    )
    start_response(s)
    messages = s.brain_request(s.active.id).messages  # type: ignore[union-attr]
    assert messages[-2]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


@pytest.mark.parametrize(
    "cancel_event", [{"type": "response.cancel"}, {"type": "response.cancel", "response_id": None}]
)
def test_cancel_stops_the_brain_and_late_output_is_dropped(cancel_event: dict[str, Any]) -> None:
    s = session()
    rid = start_response(s)
    s.brain_output(rid, AudioProduced(bytes(4800)), 0)
    outputs = send(s, {k: v for k, v in cancel_event.items() if v is not None})
    assert types(outputs)[-2:] == ["response.done", "BrainStopRequested"]
    assert outputs[-2].response.status_details.reason == "client_cancelled"
    assert s.brain_output(rid, AudioProduced(bytes(4800)), 0) == []
    assert s.brain_finished(rid, 0) == []


def test_cancel_of_another_response_id_is_not_active() -> None:
    s = session()
    start_response(s)
    [error] = send(s, {"type": "response.cancel", "response_id": "resp_other", "event_id": "c"})
    assert (error.error.code, error.error.event_id) == ("response_cancel_not_active", "c")


def test_max_output_tokens_ends_incomplete() -> None:
    s = session()
    rid = send(s, {"type": "response.create", "response": {"max_output_tokens": 3}})[-1].response_id
    outputs = s.brain_output(rid, AudioProduced(bytes(48 * 200)), 0)  # 200 ms = 4 tokens
    assert types(outputs)[-2:] == ["response.done", "BrainStopRequested"]
    assert outputs[-2].response.status == "incomplete"


def _speech_frames(s: RealtimeSession, pcm: bytes) -> list[Any]:
    outputs = send(
        s,
        {
            "type": "input_audio_buffer.append",
            "audio": __import__("base64").b64encode(pcm).decode(),
        },
    )
    return [f for o in outputs if isinstance(o, VadScoringRequested) for f in o.frames]


def test_vad_turn_commits_the_speech_and_barges_in() -> None:
    s = session()
    rid = start_response(s)
    frames = _speech_frames(s, np.zeros(24_000 * 2, dtype="<i2").tobytes())
    assert len(frames) == 62  # 2 s of 32 ms frames
    scores = [0.9 if 10 <= i < 30 else 0.0 for i in range(len(frames))]
    outputs = s.vad_scored(list(zip(frames, scores, strict=True)), 100)
    kinds = types(outputs)
    assert kinds[:3] == ["input_audio_buffer.speech_started", "response.done", "BrainStopRequested"]
    assert outputs[1].response.status_details.reason == "turn_detected"
    # At the first silent frame a speculative transcription starts (during the VAD's wait).
    assert kinds[3:9] == [
        "TranscriptionRequested",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "TranscriptionRequested",
    ]
    assert kinds[9:] == ["response.created", "rate_limits.updated", "BrainStartRequested"]
    started, speculative, stopped, final = outputs[0], outputs[3], outputs[4], outputs[8]
    assert isinstance(final, TranscriptionRequested)
    assert started.audio_start_ms == 320 - 300
    assert stopped.audio_end_ms == 960 + 512
    assert speculative.speculative and not final.speculative
    assert speculative.speech_end_ms == final.speech_end_ms == 960
    assert len(speculative.pcm16) == (960 - started.audio_start_ms) * 32
    assert len(final.pcm16) == (stopped.audio_end_ms - started.audio_start_ms) * 32
    assert rid != outputs[-1].response_id


def test_expiry_sends_session_expired_then_closes() -> None:
    s = session()
    start_response(s)
    outputs = s.expire(900, 900_000)
    assert isinstance(outputs[0], BrainStopRequested)
    assert outputs[1].error.code == "session_expired"
    assert outputs[1].error.message == "Your session hit the maximum duration of 15 minutes."
    assert outputs[2] == CloseRequested(1000, "session_expired")


def test_brain_request_carries_instructions_history_and_turn_index() -> None:
    s = session()
    send(s, {"type": "session.update", "session": {"type": "realtime", "instructions": "Hi!"}})
    send(
        s,
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        },
    )
    rid = start_response(s)
    request = s.brain_request(rid)
    assert request.messages == (
        {"role": "system", "content": "Hi!"},
        {"role": "user", "content": "hello"},
    )
    assert request.turn_index == 0
    assert isinstance(BrainStartRequested(rid), BrainStartRequested)


def test_out_of_band_input_resolves_item_references() -> None:
    s = session()
    send(
        s,
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_q",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "question"}],
            },
        },
    )
    outputs = send(
        s,
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "input": [
                    {"type": "item_reference", "id": "item_q"},
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "tl;dr?"}],
                    },
                ],
            },
        },
    )
    request = s.brain_request(outputs[-1].response_id)
    assert [m["content"] for m in request.messages[1:]] == ["question", "tl;dr?"]
    [error] = send(
        s,
        {
            "type": "response.create",
            "event_id": "r2",
            "response": {"input": [{"type": "item_reference", "id": "item_missing"}]},
        },
    )
    assert (error.error.param, error.error.event_id) == ("response.input.0.id", "r2")


def test_client_sent_user_audio_item_is_transcribed() -> None:
    s = session()
    audio = __import__("base64").b64encode(bytes(4800)).decode()
    outputs = send(
        s,
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": audio}],
            },
        },
    )
    assert types(outputs) == [
        "conversation.item.added",
        "conversation.item.done",
        "TranscriptionRequested",
    ]
    assert len(outputs[-1].pcm16) == 100 * 32  # 100 ms at 16 kHz
    assert s.conversation.get(outputs[0].item.id).audio_ms == 100


def test_silence_under_server_vad_is_trimmed_so_a_turn_holds_only_its_speech() -> None:
    # Two minutes of silence, then speech: once committed as one 120 s item.
    s = session()
    for _ in range(12):  # 10 s appends, scored as they come
        frames = _speech_frames(s, np.zeros(24_000 * 10, dtype="<i2").tobytes())
        s.vad_scored([(f, 0.0) for f in frames], 0)
        # The padding, frames still in flight, and one append.
        assert s.buffer.buffered_ms <= 300 + 1_000 + 10_000
    frames = _speech_frames(s, np.zeros(24_000 * 2, dtype="<i2").tobytes())
    scores = [0.9 if 10 <= i < 30 else 0.0 for i in range(len(frames))]
    outputs = s.vad_scored(list(zip(frames, scores, strict=True)), 0)
    committed = next(o for o in outputs if getattr(o, "type", "") == "input_audio_buffer.committed")
    item = s.conversation.get(committed.item_id)
    assert item is not None
    started = next(
        o for o in outputs if getattr(o, "type", "") == "input_audio_buffer.speech_started"
    )
    # Positions still count from the session's start.
    assert started.audio_start_ms == frames[10].start_ms - 300 > 119_000
    held_ms = len(s.buffer.peek_range(0, 10**9)) / 48
    assert held_ms <= 2_000


def test_an_append_past_the_buffer_limit_is_refused_and_nothing_is_lost_of_what_was_held() -> None:
    from voxpipe.realtime_server.input_audio import MAX_BUFFER_MS

    s = session()
    send(
        s,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        },
    )
    minute = np.zeros(24_000 * 60, dtype="<i2").tobytes()
    for _ in range(MAX_BUFFER_MS // 60_000):
        assert "error" not in types(_append(s, minute))
    refused = _append(s, bytes(480))
    assert types(refused) == ["error"]
    assert refused[0].error.param == "audio"
    assert "commit or clear" in refused[0].error.message
    assert s.buffer.buffered_ms == MAX_BUFFER_MS
    assert (
        types(send(s, {"type": "input_audio_buffer.commit"}))[0] == "input_audio_buffer.committed"
    )


def _append(s: RealtimeSession, pcm: bytes) -> list[Any]:
    import base64

    return send(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
