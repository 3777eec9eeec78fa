"""The agent in a Daily room, against a stand-in for daily-python built to its documentation.

Real parts: pipecat's ``DailyTransport`` (unchanged; only daily-python under it
is replaced, see ``tests/support/fake_daily.py``), voxpipe's graph and live
call, the embedded Realtime server on loopback (a scripted brain whose audio
arrives twice as fast as it plays), real speech for the humans. The fake
room's copy of the agent's track is the ground truth of what the room heard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fake_daily import FakeRoom, call_tasks, installed, now_ms
from phone_calls import ARTIFACTS, until
from realtime_calls import LONG_REPLY

from voxpipe.call.events import ItemTruncated
from voxpipe.daily.room import CancelAnswer, EndWhen, ListenTo, Participant
from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.timeline import EventKind
from voxpipe.transports.daily.call import DailyCall, RoomOptions
from voxpipe.transports.daily.transport import DailyCallTransport
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.realtime_server.brains import SyntheticVoice

GREETING = "Hello! How can I help you today?"
SERVER_MODULES = ("realtime_server", "aiohttp", "websockets")


def speech(make_speech: Any, text: str) -> bytes:
    """``text`` spoken as 16 kHz mono PCM, with silence after it."""
    audio, _ = sf.read(str(make_speech(text, lead_ms=0, tail_ms=800)), dtype="int16")
    return np.asarray(audio, dtype="<i2").tobytes()


@asynccontextmanager
async def agent_in(
    monkeypatch: pytest.MonkeyPatch,
    room: FakeRoom,
    tmp_path: Path,
    replies: list[str],
    **options: Any,
) -> AsyncIterator[tuple[DailyCall, asyncio.Task[CallEnd]]]:
    """The agent joined to ``room`` (a stand-in), its call running until the block ends."""
    brain = ScriptedBrain([GREETING, *replies], pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")
        with installed(monkeypatch, room):
            before = asyncio.all_tasks()
            call = DailyCall(RoomOptions(room.url, **options), spec)
            task = asyncio.create_task(call.run())
            try:
                await until(lambda: room.agent_joined or task.done(), 20)
                yield call, task
            finally:
                if not task.done():
                    call.end()
                await asyncio.wait_for(asyncio.shield(task), 20)
            # The call's tasks ended with it (the embedded server's own are not the call's).
            assert call_tasks(before | {task}, ignore=SERVER_MODULES) == []


def greeting_ms() -> float:
    """How long the scripted greeting plays (the brain's synthetic voice)."""
    return (
        len(b"".join(SyntheticVoice().synthesize(GREETING))) / 2 / SyntheticVoice.sample_rate * 1000
    )


async def greeted(room: FakeRoom) -> None:
    """Until the whole greeting has played in the room, and the agent fell quiet.

    Quiet alone is not enough: on a loaded machine the stream can stall mid-line.
    """
    await until(lambda: room.written_ms() >= greeting_ms() - 20, 30)
    await quiet(room)


async def quiet(room: FakeRoom) -> None:
    """Until the agent has written nothing to the room for 300 ms."""
    await until(lambda: not room.written_ms(since_ms=now_ms() - 300), 30)


def truncations(call: DailyCall) -> list[ItemTruncated]:
    events: list[Any] = call.call.graph.brain.events  # type: ignore[attr-defined]
    return [e for e in events if isinstance(e, ItemTruncated)]


async def test_the_first_participant_is_greeted_answered_and_leaving_ends_the_call(
    monkeypatch: pytest.MonkeyPatch, make_speech: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    question = speech(make_speech, "What time do you open on Saturday?")
    async with agent_in(monkeypatch, room, tmp_path, ["We open at nine."]) as (call, task):
        alice = room.human_joins("Alice")
        await greeted(room)  # the greeting reaches the room
        greeted_ms = room.last_written_ms()
        asked_ms = now_ms()
        alice.say(question)
        await until(lambda: room.loud_ms(since_ms=asked_ms + 500) > 500, 30)  # the answer
        await until(lambda: not room.written_ms(since_ms=now_ms() - 300), 20)
        alice.leave()
        left_ms = now_ms()
        ended = await asyncio.wait_for(asyncio.shield(task), 10)
    assert greeted_ms is not None
    assert ended is CallEnd.HUNG_UP
    (end,) = call.call.timeline.of(EventKind.CALL_ENDED)
    assert end.t_ms - left_ms < 2000  # the call ended within 2 s of the last human leaving
    assert room.agent_left  # and the agent left the room
    out = tmp_path / "calls" / call.call.call_id
    assert [name for name in ARTIFACTS if (out / name).exists()] == list(ARTIFACTS)
    audio, rate = sf.read(str(out / "call.wav"))
    assert rate == 24_000 and abs(audio[:, 0]).max() > 0.05 and abs(audio[:, 1]).max() > 0.05
    transcript = json.loads((out / "transcript.json").read_text())
    assert [t["participant"] for t in transcript["turns"]] == ["Alice"]
    kinds = [e.kind for e in call.call.timeline.events]
    assert EventKind.PARTICIPANT_JOINED in kinds and EventKind.PARTICIPANT_LEFT in kinds


async def test_a_barge_in_truncates_the_answer_where_the_rooms_track_stopped_playing_it(
    monkeypatch: pytest.MonkeyPatch, make_speech: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    question = speech(make_speech, "What time do you open on Saturday?")
    interruption = speech(make_speech, "Sorry, one more thing.")
    async with agent_in(monkeypatch, room, tmp_path, [LONG_REPLY, "Sure."]) as (call, _task):
        alice = room.human_joins("Alice")
        await greeted(room)
        asked_ms = now_ms()
        alice.say(question)
        await until(lambda: room.loud_ms(since_ms=asked_ms) > 1500, 30)  # the answer plays
        alice.say(interruption)
        await until(lambda: any(c.audio_end_ms > 0 for c in truncations(call)), 25)
        cut = next(c for c in truncations(call) if c.audio_end_ms > 0)
        await quiet(room)  # the next reply waits for the end of the interruption
        heard_ms = room.written_ms(since_ms=asked_ms, until_ms=now_ms())
    print(f"\ntruncated at {cut.audio_end_ms} ms; the room's track played {heard_ms:.0f} ms of it")
    assert 1000 < cut.audio_end_ms < cut.received_ms  # cut mid-answer, after 1.5 s were heard
    # What the room played of the answer, to the 20 ms chunk in flight when it was cut.
    assert -10 <= heard_ms - cut.audio_end_ms <= 40


async def test_one_participant_is_heard_at_a_time_and_a_drop_mid_answer_cancels_the_answer(
    monkeypatch: pytest.MonkeyPatch, make_speech: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    replies = [LONG_REPLY, "Yes, we take cards."]
    async with agent_in(monkeypatch, room, tmp_path, replies) as (call, task):
        alice = room.human_joins("Alice")
        await greeted(room)
        bob = room.human_joins("Bob")
        bob.say(speech(make_speech, "Is anybody there at all?"))  # not heard: Alice is
        await until(lambda: not bob.speaking, 20)
        asked_ms = now_ms()
        alice.say(speech(make_speech, "What time do you open on Saturday?"))
        await until(lambda: room.loud_ms(since_ms=asked_ms) > 1000, 30)  # mid-answer
        alice.leave()
        left_ms = now_ms()
        await quiet(room)
        stopped_ms = room.last_written_ms()
        decided = list(call.transport.decided)
        still_running = not task.done()
        await until(lambda: any(c.audio_end_ms > 0 for c in truncations(call)), 10)
        cut = next(c for c in truncations(call) if c.audio_end_ms > 0)
        heard_ms = room.written_ms(since_ms=asked_ms, until_ms=now_ms())  # Bob has not asked
        asked_ms = now_ms()
        bob.say(speech(make_speech, "Do you take cards?"))
        await until(lambda: room.loud_ms(since_ms=asked_ms) > 500, 30)  # Bob is answered
        await quiet(room)
        bob.leave()
        ended = await asyncio.wait_for(asyncio.shield(task), 10)
    assert still_running  # Bob is still there: the call goes on
    assert stopped_ms is not None and stopped_ms - left_ms < 1000  # the answer stopped
    assert [type(d) for d in decided][-2:] == [CancelAnswer, ListenTo]
    assert decided[-1] == ListenTo(Participant(bob.id, "Bob"))
    print(f"\ncancelled at {cut.audio_end_ms} ms; the room's track played {heard_ms:.0f} ms")
    assert -10 <= heard_ms - cut.audio_end_ms <= 40  # truncated at what the room heard
    assert ended is CallEnd.HUNG_UP
    transcript = json.loads(
        (tmp_path / "calls" / call.call.call_id / "transcript.json").read_text()
    )
    # Bob's first question was never heard: one turn from Alice, then Bob's.
    assert [t["participant"] for t in transcript["turns"]] == ["Alice", "Bob"]
    listened = [e.data["participant"] for e in call.call.timeline.of(EventKind.LISTENING_TO)]
    assert listened == ["Alice", "Bob"]


async def test_a_participant_already_in_the_room_is_greeted_and_heard(
    monkeypatch: pytest.MonkeyPatch, make_speech: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    alice = room.human_joins("Alice")  # before the agent: Daily announces no join for her
    async with agent_in(monkeypatch, room, tmp_path, ["We open at nine."]) as (call, task):
        await greeted(room)
        asked_ms = now_ms()
        alice.say(speech(make_speech, "What time do you open on Saturday?"))
        await until(lambda: room.loud_ms(since_ms=asked_ms) > 500, 30)  # answered
        await quiet(room)
        alice.leave()
        ended = await asyncio.wait_for(asyncio.shield(task), 10)
    assert ended is CallEnd.HUNG_UP
    transcript = json.loads(
        (tmp_path / "calls" / call.call.call_id / "transcript.json").read_text()
    )
    assert [t["participant"] for t in transcript["turns"]] == ["Alice"]


async def test_staying_in_an_empty_room_the_agent_says_nothing_until_told_to_leave(
    monkeypatch: pytest.MonkeyPatch, make_speech: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    stay = {"end_when": EndWhen.NEVER}
    async with agent_in(monkeypatch, room, tmp_path, [LONG_REPLY], **stay) as (call, task):
        alice = room.human_joins("Alice")
        await greeted(room)
        asked_ms = now_ms()
        alice.say(speech(make_speech, "What time do you open on Saturday?"))
        await until(lambda: room.loud_ms(since_ms=asked_ms) > 1000, 30)  # mid-answer
        alice.leave()
        left_ms = now_ms()
        await until(lambda: any(c.audio_end_ms > 0 for c in truncations(call)), 10)  # cancelled
        await quiet(room)
        stopped_ms = room.last_written_ms()
        still_running = not task.done()
        call.end()
        ended = await asyncio.wait_for(asyncio.shield(task), 10)
    assert still_running and ended is CallEnd.SERVER_ENDED
    assert stopped_ms is not None and stopped_ms - left_ms < 1000
    assert call.transport.room.empty and call.transport.room.listening is None


@pytest.mark.models
async def test_on_the_chained_graph_the_greeting_is_spoken_and_cut_when_its_listener_drops(
    monkeypatch: pytest.MonkeyPatch, loaded_engines: Any, tmp_path: Path
) -> None:
    room = FakeRoom()
    alice = room.human_joins("Alice")  # there before the agent: greeted once the graph runs
    bob = room.human_joins("Bob")
    spec = LiveCallSpec(mode=Mode.CHAINED, record_dir=tmp_path / "calls")
    with installed(monkeypatch, room):
        call = DailyCall(RoomOptions(room.url), spec)
        task = asyncio.create_task(call.run())
        try:
            await until(lambda: room.loud_ms() > 300, 60)  # the local voice greets Alice
            alice.leave()  # mid-greeting
            left_ms = now_ms()
            await quiet(room)
            stopped_ms = room.last_written_ms()
            still_running = not task.done()
        finally:
            bob.leave()
            ended = await asyncio.wait_for(task, 20)
    assert still_running and ended is CallEnd.HUNG_UP
    assert stopped_ms is not None and stopped_ms - left_ms < 1000  # the greeting was cut
    (_start, greeted_ms), *_ = room.runs()
    assert greeted_ms < 2000  # "Hello, Alice! How can I help you today?" takes longer
    audio, _rate = sf.read(str(tmp_path / "calls" / call.call.call_id / "call.wav"))
    assert abs(audio[:, 1]).max() > 0.05  # the greeting is on the bot's side of call.wav


@pytest.mark.parametrize("how", ["ejected", "network_lost"])
async def test_a_room_that_ejects_the_agent_or_loses_its_network_ends_the_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    room = FakeRoom()
    brain = ScriptedBrain([GREETING], pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key)
        with installed(monkeypatch, room):
            transport = DailyCallTransport(room.url, silent_ms=2000)
            call = DailyCall(RoomOptions(room.url), spec, transport=transport)
            task = asyncio.create_task(call.run())
            await until(lambda: transport.joined_ms is not None, 20)
            room.human_joins("Alice")
            await greeted(room)
            if how == "ejected":
                room.eject_agent()
            else:
                room.network("sendTransport", "interrupted")
                room.network("signalling", "connected")  # one connection up is not enough
            lost_ms = now_ms()
            ended = await asyncio.wait_for(task, 10)
    (end,) = call.call.timeline.of(EventKind.CALL_ENDED)
    if how == "ejected":
        assert ended is CallEnd.HUNG_UP and end.t_ms - lost_ms < 1000
    else:
        assert ended is CallEnd.PEER_SILENT and 2000 - 600 < end.t_ms - lost_ms < 4500
