"""The room core: whom the agent hears, when it greets, cancels and ends (synchronous, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from voxpipe.daily.labels import label_transcript, turn_speakers
from voxpipe.daily.room import (
    CancelAnswer,
    EndCall,
    EndWhen,
    Greet,
    ListenTo,
    Participant,
    Room,
)
from voxpipe.errors import ConfigError
from voxpipe.timeline import EventKind, Timeline

ALICE = Participant("a", "Alice")
BOB = Participant("b", "Bob")
CAROL = Participant("c", "Carol")

# (room settings, what happens, the decisions after each step)
SCENARIOS: dict[str, tuple[dict[str, Any], list[tuple[str, Participant]], list[list[Any]]]] = {
    "the first human is heard and greeted; the last one leaving ends the call": (
        {},
        [("join", ALICE), ("join", BOB), ("leave", BOB), ("leave", ALICE)],
        [
            [ListenTo(ALICE), Greet(ALICE)],
            [],  # Bob is in the room, not heard
            [],  # Bob was not heard: nothing to cancel
            [CancelAnswer(ALICE), EndCall(EndWhen.LAST_HUMAN_LEFT, 3)],
        ],
    ),
    "the listened-to leaving cancels the answer and the agent turns to who is left": (
        {},
        [("join", ALICE), ("join", BOB), ("join", CAROL), ("leave", ALICE), ("join", ALICE)],
        [
            [ListenTo(ALICE), Greet(ALICE)],
            [],
            [],
            [CancelAnswer(ALICE), ListenTo(BOB)],  # longest there first
            [],  # back, but Bob is heard now; no second greeting
        ],
    ),
    "a named participant is waited for, and only they are heard": (
        {"listen_to": "Bob"},
        [("join", ALICE), ("join", BOB), ("leave", BOB), ("join", CAROL), ("leave", ALICE)],
        [
            [],
            [ListenTo(BOB), Greet(BOB)],
            [CancelAnswer(BOB), ListenTo(None)],  # Alice stays; nobody else is Bob
            [],
            [],  # Carol is still there
        ],
    ),
    "ending when the listened-to leaves": (
        {"end_when": EndWhen.LISTENED_LEFT},
        [("join", ALICE), ("join", BOB), ("leave", ALICE), ("leave", BOB)],
        [
            [ListenTo(ALICE), Greet(ALICE)],
            [],
            [CancelAnswer(ALICE), EndCall(EndWhen.LISTENED_LEFT, 2)],
            [],  # over already
        ],
    ),
    "staying in an empty room until told to end": (
        {"end_when": EndWhen.NEVER},
        [("join", ALICE), ("leave", ALICE), ("join", BOB)],
        [
            [ListenTo(ALICE), Greet(ALICE)],
            [CancelAnswer(ALICE), ListenTo(None)],
            [ListenTo(BOB)],  # heard, not greeted again
        ],
    ),
    "repeats and strangers change nothing": (
        {},
        [("join", ALICE), ("join", ALICE), ("leave", BOB)],
        [[ListenTo(ALICE), Greet(ALICE)], [], []],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_room_scenarios(name: str) -> None:
    settings, steps, expected = SCENARIOS[name]
    room = Room(**settings)
    for at, ((action, who), decisions) in enumerate(zip(steps, expected, strict=True)):
        got = room.joined(who, at) if action == "join" else room.left(who.id, at)
        assert got == decisions, f"step {at}: {action} {who.name}"


def test_only_the_listened_to_is_heard_and_an_empty_room_is_known() -> None:
    room = Room()
    assert room.empty and not room.hears("a")
    room.joined(ALICE, 0)
    room.joined(BOB, 1)
    assert room.hears("a") and not room.hears("b") and not room.empty
    assert room.present == [ALICE, BOB]
    room.left("a", 2)
    room.left("b", 3)
    assert room.empty and room.ended == EndCall(EndWhen.LAST_HUMAN_LEFT, 3)


def test_participants_are_read_from_daily_and_a_blank_name_is_refused() -> None:
    assert Participant.from_daily({"id": "x", "info": {"userName": "Ann"}}) == Participant(
        "x", "Ann"
    )
    assert Participant.from_daily({"id": "y"}).label == "y"  # no name: the id
    with pytest.raises(ConfigError):
        Room(listen_to="  ")


def test_turns_are_labelled_by_who_was_heard_when_they_ended() -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.LISTENING_TO, participant="Alice")
    timeline.add(1000, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(1500, EventKind.FIRST_BOT_AUDIO)
    timeline.add(3000, EventKind.LISTENING_TO, participant="Bob")
    timeline.add(4000, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(4500, EventKind.FIRST_BOT_AUDIO)
    assert turn_speakers(timeline) == ["Alice", "Bob"]
    transcript = {"turns": [{"heard": ""}, {"heard": ""}], "messages": []}
    labelled = label_transcript(transcript, timeline)
    assert [t["participant"] for t in labelled["turns"]] == ["Alice", "Bob"]


def test_a_turn_before_anyone_was_listened_to_has_no_label() -> None:
    timeline = Timeline()
    timeline.add(100, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(200, EventKind.LISTENING_TO, participant="Alice")
    assert turn_speakers(timeline) == [None]
