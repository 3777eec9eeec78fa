"""Synchronous tests of the realtime core: parsing, config merge, truncation, usage, limits, VAD."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import (
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemUserMessage,
    RealtimeSessionCreateRequest,
)
from openai.types.realtime.realtime_conversation_item_assistant_message import Content

from voxpipe.audio import AudioFormat
from voxpipe.realtime_server.conversation import Conversation, ItemRecord, TranscriptSegment
from voxpipe.realtime_server.parsing import CLIENT_EVENT_CLASSES, parse_client_event
from voxpipe.realtime_server.protocol_errors import ProtocolError
from voxpipe.realtime_server.rate_limits import RateLimiter, RateLimitPolicy
from voxpipe.realtime_server.session_config import SessionConfig, TurnConfig
from voxpipe.realtime_server.turn_detection import (
    SilenceBegan,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
)
from voxpipe.realtime_server.usage import (
    ContextPiece,
    ContextTokens,
    build_usage,
    input_audio_tokens,
    output_audio_tokens,
    text_tokens,
)


def test_all_eleven_ga_client_events_are_known() -> None:
    assert len(CLIENT_EVENT_CLASSES) == 11
    assert "response.output_audio.delta" not in CLIENT_EVENT_CLASSES
    assert "output_audio_buffer.clear" in CLIENT_EVENT_CLASSES


@pytest.mark.parametrize(
    ("raw", "code", "param", "event_id"),
    [
        ("not json", "invalid_json", None, None),
        ('"a string"', "invalid_type", None, None),
        ('{"type": "nope", "event_id": "a"}', "invalid_value", "type", "a"),
        ('{"type": 3, "event_id": "b"}', "invalid_value", "type", "b"),
        (
            '{"type": "conversation.item.delete", "event_id": "c"}',
            "missing_required_parameter",
            "item_id",
            "c",
        ),
        (
            '{"type": "conversation.item.truncate", "item_id": "i", "content_index": "0x",'
            ' "audio_end_ms": 1}',
            "invalid_type",
            "content_index",
            None,
        ),
        (
            '{"type": "conversation.item.create", "item": {"type": "message", "role": "robot",'
            ' "content": []}}',
            "invalid_value",
            "item.role",
            None,
        ),
        (
            '{"type": "session.update", "event_id": "d"}',
            "missing_required_parameter",
            "session",
            "d",
        ),
    ],
)
def test_parse_errors_name_code_param_and_event(
    raw: str, code: str, param: str | None, event_id: str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(raw)
    error = caught.value
    assert (error.code, error.param, error.event_id) == (code, param, event_id)
    event = error.to_event("event_1")
    assert event.error.type == "invalid_request_error" and event.error.code == code


def test_parse_returns_the_openai_model() -> None:
    event = parse_client_event(json.dumps({"type": "response.cancel", "response_id": "r"}))
    assert type(event).__name__ == "ResponseCancelEvent"
    assert event.response_id == "r"  # type: ignore[attr-defined]


def _update(config: SessionConfig, session: dict[str, Any], *, locked: bool = False) -> None:
    config.update(
        RealtimeSessionCreateRequest.model_validate({"type": "realtime", **session}),
        voice_locked=locked,
    )


def test_session_update_merges_partially_and_null_turns_vad_off() -> None:
    config = SessionConfig("gpt-realtime")
    _update(config, {"instructions": "Be brief."})
    _update(config, {"audio": {"output": {"voice": "marin"}}})
    assert config.instructions == "Be brief."  # kept across updates
    assert config.voice == "marin"
    assert config.turn == TurnConfig()  # OpenAI's defaults
    _update(
        config,
        {
            "audio": {
                "input": {
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": 200,
                        "threshold": 0.7,
                    }
                }
            }
        },
    )
    assert config.turn == TurnConfig(threshold=0.7, silence_duration_ms=200)
    _update(
        config,
        {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}},
    )
    assert config.turn == TurnConfig(silence_duration_ms=400)  # eager: answers sooner
    _update(config, {"audio": {"input": {"turn_detection": None}}})
    assert config.turn is None
    _update(config, {"audio": {"input": {"format": {"type": "audio/pcma"}}}})
    assert config.input_format is AudioFormat.G711_ALAW
    assert config.output_format is AudioFormat.PCM16_24K


@pytest.mark.parametrize(
    ("session", "locked", "code", "param"),
    [
        (
            {"output_modalities": ["text", "audio"]},
            False,
            "invalid_value",
            "session.output_modalities",
        ),
        ({"max_output_tokens": 5000}, False, "invalid_value", "session.max_output_tokens"),
        ({"input_audio_format": "pcm16"}, False, "unknown_parameter", "session.input_audio_format"),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "bitrate": 3}}}},
            False,
            "unknown_parameter",
            "session.audio.input.format.bitrate",
        ),
        (
            {"audio": {"output": {"voice": "cedar"}}},
            True,
            "cannot_update_voice",
            "session.audio.output.voice",
        ),
    ],
)
def test_session_update_rejections_leave_config_unchanged(
    session: dict[str, Any], locked: bool, code: str, param: str
) -> None:
    config = SessionConfig("m")
    before = config.model()
    with pytest.raises(ProtocolError) as caught:
        _update(config, session, locked=locked)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert config.model() == before


def _assistant(item_id: str, audio_ms: int, words: list[str]) -> ItemRecord:
    item = RealtimeConversationItemAssistantMessage(
        id=item_id, type="message", role="assistant", content=[Content(type="output_audio")]
    )
    record = ItemRecord(item=item, audio=bytearray(audio_ms * 48))
    step = audio_ms // len(words)
    record.segments = [TranscriptSegment(i * step, w + " ") for i, w in enumerate(words)]
    return record


@pytest.mark.parametrize(
    ("content_index", "end_ms", "code", "message"),
    [
        (0, 1001, "invalid_value", "Audio content of 1000ms is already shorter than 1001ms"),
        (1, 10, "invalid_value", "Only content_index 0 can be truncated."),
        (0, -5, "invalid_value", "audio_end_ms must not be negative."),
    ],
)
def test_truncate_rejections(content_index: int, end_ms: int, code: str, message: str) -> None:
    conversation = Conversation()
    conversation.add(_assistant("a", 1000, ["one", "two", "three", "four"]))
    with pytest.raises(ProtocolError) as caught:
        conversation.truncate("a", content_index, end_ms)
    assert (caught.value.code, caught.value.message) == (code, message)
    assert conversation.get("a").audio_ms == 1000


@pytest.mark.parametrize(
    ("end_ms", "kept"),
    [
        (1000, "one two three four "),
        (600, "one two three "),
        (250, "one "),
        (251, "one two "),
        (0, ""),
    ],
)
def test_truncate_keeps_audio_and_words_up_to_the_cut(end_ms: int, kept: str) -> None:
    conversation = Conversation()
    conversation.add(_assistant("a", 1000, ["one", "two", "three", "four"]))
    record = conversation.truncate("a", 0, end_ms)
    assert record.audio_ms == end_ms
    assert record.transcript == kept


def test_truncate_refuses_user_items_and_unknown_ids() -> None:
    conversation = Conversation()
    user = RealtimeConversationItemUserMessage(
        id="u", type="message", role="user", content=[{"type": "input_audio"}]
    )  # type: ignore[list-item]
    conversation.add(ItemRecord(item=user, audio=bytearray(4800)))
    with pytest.raises(ProtocolError) as not_assistant:
        conversation.truncate("u", 0, 10)
    with pytest.raises(ProtocolError) as unknown:
        conversation.truncate("zzz", 0, 10)
    assert not_assistant.value.param == "item_id"
    assert unknown.value.code == "item_truncate_invalid_item_id"


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("Hello", 2), ("Hello, world!", 6), ("12345", 2), ("internationalization", 5)],
)
def test_text_token_estimate(text: str, tokens: int) -> None:
    assert text_tokens(text) == tokens


def test_audio_tokens_follow_openai_rates() -> None:
    assert input_audio_tokens(1000) == 10  # 1 per 100 ms in
    assert output_audio_tokens(1000) == 20  # 1 per 50 ms out
    assert input_audio_tokens(1) == 1


def test_usage_counts_the_unchanged_prefix_as_cached() -> None:
    first = ContextTokens((ContextPiece("instructions", 30, 0), ContextPiece("u1@0", 0, 25)))
    second = ContextTokens((*first.pieces, ContextPiece("a1@0", 0, 40), ContextPiece("u2@0", 0, 9)))
    truncated = ContextTokens((*first.pieces, ContextPiece("a1@1", 0, 20)))
    usage = build_usage(second, first, output_text_tokens=12, output_audio_ms=2000)
    assert usage.input_tokens == 104
    assert usage.input_token_details.cached_tokens == 55
    assert usage.output_tokens == 12 + 40
    assert usage.total_tokens == 104 + 52
    assert (
        build_usage(
            truncated, second, output_text_tokens=0, output_audio_ms=0
        ).input_token_details.cached_tokens
        == 55
    )


def test_rate_limits_reserve_refill_and_exhaust() -> None:
    limiter = RateLimiter(RateLimitPolicy(requests_per_minute=2, tokens_per_minute=1000), 0)
    first = limiter.reserve(600, now_ms=0)
    assert first is not None and first.tokens == 600
    snapshot = {r.name: r for r in limiter.snapshot(0)}
    assert (snapshot["requests"].remaining, snapshot["tokens"].remaining) == (1, 400)
    limiter.settle(first, used_tokens=100, now_ms=0)  # unused reservation comes back
    assert {r.name: r.remaining for r in limiter.snapshot(0)}["tokens"] == 900
    assert limiter.reserve(10, now_ms=0) is not None
    assert limiter.reserve(10, now_ms=0) is None  # out of requests
    assert limiter.reserve(10, now_ms=30_000) is not None  # half a minute refills one
    limiter.exhaust(now_ms=30_000, reset_seconds=10)
    assert limiter.reserve(1, now_ms=39_000) is None
    assert {r.name: r.remaining for r in limiter.snapshot(30_000)}["tokens"] == 0


def _frames(probabilities: list[float]) -> list[tuple[int, int, float]]:
    return [(i * 32, (i + 1) * 32, p) for i, p in enumerate(probabilities)]


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.1] * 40, []),
        (
            [0.1] * 20 + [0.9] * 20 + [0.1] * 20,
            [SpeechStarted(640 - 300), SilenceBegan(1280), SpeechStopped(1280 + 512, 1280)],
        ),
        # 0.4 is above threshold - hysteresis (0.35): still speech, no stop.
        ([0.9] * 5 + [0.4] * 30, [SpeechStarted(0)]),
        # A 96 ms gap between words is not even worth a speculative transcription.
        (
            [0.9] * 10 + [0.0] * 3 + [0.9] * 10 + [0.0] * 17,
            [SpeechStarted(0), SilenceBegan(736), SpeechStopped(736 + 512, 736)],
        ),
        # A 200 ms pause is shorter than silence_duration_ms: one turn.
        (
            [0.9] * 10 + [0.0] * 6 + [0.9] * 10 + [0.0] * 17,
            [SpeechStarted(0), SilenceBegan(320), SilenceBegan(832), SpeechStopped(832 + 512, 832)],
        ),
    ],
)
def test_turn_detection_table(probabilities: list[float], expected: list[Any]) -> None:
    detector = TurnDetector(TurnConfig())
    events = [e for s, end, p in _frames(probabilities) if (e := detector.update(s, end, p))]
    assert events == expected
