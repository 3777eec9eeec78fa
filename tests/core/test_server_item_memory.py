"""What a session's conversation holds, and what truncation changes (issue 19).

Every item once kept its audio for the session's life (a 1-hour call held every
byte of both sides) and the session's ``truncation`` was accepted but ignored.
Sans-I/O: client events in, server events and brain requests out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voxpipe.realtime_server.conversation import ConversationLimits
from voxpipe.realtime_server.effects import AudioProduced, TextProduced
from voxpipe.realtime_server.ids import IdFactory
from voxpipe.realtime_server.rate_limits import RateLimitPolicy
from voxpipe.realtime_server.session import RealtimeSession

BYTES_PER_MS = 48  # PCM16 at 24 kHz


def session(limits: ConversationLimits | None = None) -> RealtimeSession:
    s = RealtimeSession(
        model="gpt-realtime",
        ids=IdFactory("m"),
        now_ms=0,
        conversation_limits=limits,
        rate_limits=RateLimitPolicy(tokens_per_minute=10**9),  # the clock stays at 0 here
    )
    s.start()
    send(
        s,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        },
    )
    return s


def send(s: RealtimeSession, event: dict[str, Any], now_ms: int = 0) -> list[Any]:
    return s.receive(json.dumps(event), now_ms)


def one(outputs: list[Any], kind: str) -> Any:
    found = [o for o in outputs if getattr(o, "type", None) == kind]
    assert len(found) == 1, [getattr(o, "type", type(o).__name__) for o in outputs]
    return found[0]


def user_turn(s: RealtimeSession, audio_ms: int) -> str:
    """``audio_ms`` of caller audio appended and committed: the user item's id."""
    pcm = bytes(audio_ms * BYTES_PER_MS)
    send(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
    return str(
        one(send(s, {"type": "input_audio_buffer.commit"}), "input_audio_buffer.committed").item_id
    )


def assistant_turn(s: RealtimeSession, words: list[str], ms_per_word: int) -> str:
    """A spoken answer, each word's text just before its audio: the assistant item's id."""
    created = send(s, {"type": "response.create"})
    response_id = one(created, "response.created").response.id
    item_id = ""
    for word in words:
        events = s.brain_output(response_id, TextProduced(word + " "), 0)
        events += s.brain_output(response_id, AudioProduced(bytes(ms_per_word * BYTES_PER_MS)), 0)
        item_id = next((str(e.item_id) for e in events if hasattr(e, "item_id")), item_id)
    s.brain_finished(response_id, 0)
    return item_id


def retrieve(s: RealtimeSession, item_id: str) -> dict[str, Any]:
    event = one(
        send(s, {"type": "conversation.item.retrieve", "item_id": item_id}),
        "conversation.item.retrieved",
    )
    return dict(event.item.model_dump(mode="json"))


def test_a_long_call_holds_at_most_the_audio_budget_and_every_item_keeps_its_length() -> None:
    limits = ConversationLimits(audio_kept_ms=60_000)
    s = session(limits)
    kept: list[int] = []
    ids: list[tuple[str, str]] = []
    for _ in range(120):  # 40 minutes: 10 s from the caller, 10 s of answer per turn
        ids.append((user_turn(s, 10_000), assistant_turn(s, ["word"] * 20, 500)))
        kept.append(s.conversation.kept_audio_bytes())
    # The budget plus the newest item (never touched, so it can be truncated exactly).
    assert max(kept) <= (60_000 + 10_000) * BYTES_PER_MS
    assert kept[-1] == kept[-10]  # flat once the budget is reached
    assert len(s.conversation) == 240 and s.conversation.forgotten == 0
    first_user, first_answer = ids[0]
    old = s.conversation.get(first_answer)
    assert (old.audio_ms, old.audio, old.transcript) == (10_000, bytearray(), "word " * 20)
    assert retrieve(s, first_user)["content"][0].get("audio") is None
    newest_user, newest_answer = ids[-1]
    assert (
        len(base64.b64decode(retrieve(s, newest_answer)["content"][0]["audio"]))
        == 10_000 * BYTES_PER_MS
    )
    assert (
        len(base64.b64decode(retrieve(s, newest_user)["content"][0]["audio"]))
        == 10_000 * BYTES_PER_MS
    )
    # An answer whose bytes are gone is still checked against (and cut to) its length.
    refused = send(
        s,
        {
            "type": "conversation.item.truncate",
            "item_id": first_answer,
            "content_index": 0,
            "audio_end_ms": 10_001,
        },
    )
    assert (
        one(refused, "error").error.message
        == "Audio content of 10000ms is already shorter than 10001ms"
    )
    send(
        s,
        {
            "type": "conversation.item.truncate",
            "item_id": first_answer,
            "content_index": 0,
            "audio_end_ms": 1_200,
        },
    )
    assert (old.audio_ms, old.transcript) == (1_200, "word word word ")


def test_truncate_changes_what_retrieve_returns_and_what_the_next_response_reads() -> None:
    s = session()
    user_turn(s, 1_000)
    answer = assistant_turn(s, ["one", "two", "three", "four"], 250)
    before = retrieve(s, answer)["content"][0]
    assert before["transcript"] == "one two three four "
    assert len(base64.b64decode(before["audio"])) == 1_000 * BYTES_PER_MS
    truncated = send(
        s,
        {
            "type": "conversation.item.truncate",
            "item_id": answer,
            "content_index": 0,
            "audio_end_ms": 400,
        },
    )
    assert one(truncated, "conversation.item.truncated").audio_end_ms == 400
    after = retrieve(s, answer)["content"][0]
    assert after["transcript"] == "one two "  # the third word starts at 500 ms: never heard
    assert len(base64.b64decode(after["audio"])) == 400 * BYTES_PER_MS
    user_turn(s, 1_000)
    response_id = one(send(s, {"type": "response.create"}), "response.created").response.id
    messages = s.brain_request(response_id).messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "one two "
    # The model is billed for the 400 ms it has, not the 1,000 ms it sent.
    usage = s.brain_finished(response_id, 0)[-1].response.usage
    assert usage.input_token_details.audio_tokens == 10 + 8 + 10  # 1 s in, 0.4 s out, 1 s in


def text_item(s: RealtimeSession, text: str, role: str = "user") -> str:
    kind = "input_text" if role == "user" else "output_text"
    event = {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]},
    }
    return str(one(send(s, event), "conversation.item.added").item.id)


def context_of_next_response(s: RealtimeSession) -> list[str]:
    """The conversation messages the brain would read (the response is then cancelled)."""
    response_id = one(send(s, {"type": "response.create"}), "response.created").response.id
    contents = [str(m["content"]) for m in s.brain_request(response_id).messages[1:]]
    one(send(s, {"type": "response.cancel"}), "response.done")
    return contents


def truncation(s: RealtimeSession, value: Any) -> None:
    one(
        send(s, {"type": "session.update", "session": {"type": "realtime", "truncation": value}}),
        "session.updated",
    )


def test_retention_ratio_cuts_to_its_fraction_and_the_cut_stays_put_until_the_limit() -> None:
    s = session()
    truncation(
        s,
        {
            "type": "retention_ratio",
            "retention_ratio": 0.5,
            "token_limits": {"post_instructions": 100},
        },
    )
    seen = []
    for i in range(1, 11):
        text_item(s, "word " * 19 + str(i))  # 20 tokens each
        seen.append([c.rsplit(" ", 1)[-1] for c in context_of_next_response(s)])
    assert seen[4] == ["1", "2", "3", "4", "5"]  # 100 tokens: at the limit, nothing cut
    assert seen[5] == ["5", "6"]  # 120: cut to at most 50
    assert seen[6] == ["5", "6", "7"]  # the cut stays put: the prefix stays cacheable
    assert seen[8] == ["5", "6", "7", "8", "9"]
    assert seen[9] == ["9", "10"]
    assert s.context_window.cuts == 2
    assert len(s.conversation) == 10  # cut from what the model reads, not from the conversation


def test_auto_drops_just_enough_and_disabled_refuses_a_conversation_over_the_limit() -> None:
    s = session()
    for i in range(30):
        text_item(s, "word " * 999 + str(i))  # 1,000 tokens each: 30,000 in all
    truncation(s, "disabled")
    refused = one(send(s, {"type": "response.create"}), "error").error
    assert (refused.code, refused.param) == ("context_length_exceeded", "session.truncation")
    assert s.active is None
    truncation(s, "auto")
    kept = context_of_next_response(s)
    instructions = s.brain_request("r").messages[0]["content"]
    assert instructions
    assert len(kept) == 28 and kept[-1].endswith(" 29")  # 28,000 fit 28,224 less the instructions


def test_items_past_the_count_or_text_budget_are_forgotten_oldest_first() -> None:
    s = session(ConversationLimits(max_items=10, text_kept_chars=1_000_000))
    ids = [text_item(s, f"note {i}") for i in range(25)]
    assert [r.id for r in s.conversation.records()] == ids[-10:]
    assert s.conversation.forgotten == 15
    gone = one(send(s, {"type": "conversation.item.retrieve", "item_id": ids[0]}), "error").error
    assert gone.code == "item_retrieve_invalid_item_id"
    s = session(ConversationLimits(text_kept_chars=100_000))
    big = [text_item(s, "x" * 30_000) for _ in range(5)]
    assert [r.id for r in s.conversation.records()] == big[-3:]  # 90,000 characters kept
    huge = text_item(s, "y" * 200_000)  # the newest item is kept whatever its size
    assert [r.id for r in s.conversation.records()] == [huge]


@pytest.mark.parametrize("kept_ms", [0, 1_000])
def test_the_newest_answer_keeps_its_audio_whatever_the_budget(kept_ms: int) -> None:
    s = session(ConversationLimits(audio_kept_ms=kept_ms))
    user = user_turn(s, 2_000)
    answer = assistant_turn(s, ["a", "b"], 1_000)
    assert len(s.conversation.get(answer).audio) == 2_000 * BYTES_PER_MS
    assert s.conversation.get(user).audio == bytearray()
    assert s.conversation.get(user).audio_ms == 2_000


@pytest.mark.parametrize(
    ("audio_end_ms", "kept"),
    [
        (0, ""),
        (1, "Our "),  # the first word had begun
        (1_000, "Our pharmacy opens "),  # 1 s of a 4 s, 10-word sentence: 2.5 words begun
        (3_999, "Our pharmacy opens at nine in the morning on Saturday. "),
        (4_000, "Our pharmacy opens at nine in the morning on Saturday. "),
    ],
)
def test_a_sentence_sent_with_its_audio_is_cut_to_the_words_whose_audio_began(
    audio_end_ms: int, kept: str
) -> None:
    # The local engines send a piece's whole text, then its audio: the cut keeps what
    # had begun playing, not the whole sentence of which the caller heard a word.
    s = session()
    created = send(s, {"type": "response.create"})
    response_id = one(created, "response.created").response.id
    text = "Our pharmacy opens at nine in the morning on Saturday. "
    events = s.brain_output(response_id, TextProduced(text), 0)
    events += s.brain_output(response_id, AudioProduced(bytes(4_000 * BYTES_PER_MS)), 0)
    item_id = next(str(e.item_id) for e in events if hasattr(e, "item_id"))
    s.brain_finished(response_id, 0)
    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    send(s, {**truncate, "audio_end_ms": audio_end_ms})
    assert retrieve(s, item_id)["content"][0]["transcript"] == kept
