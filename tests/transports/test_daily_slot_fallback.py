"""A live call (``voxpipe daily``'s) on the chained graph takes its slots' engines from [chained].

The room is the daily-python stand-in (Daily is the paid remote provider);
the agent's first voice is a Piper voice file that does not exist, so the
greeting it owes the first human is handed to the working voice, and the room
hears it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fake_daily import FakeRoom, installed
from phone_calls import until

from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode
from voxpipe.slot_config import parse_chained_table
from voxpipe.timeline import EventKind
from voxpipe.transports.daily.call import DailyCall, RoomOptions

pytestmark = pytest.mark.models


async def test_the_greeting_is_spoken_by_the_next_voice_when_the_first_is_missing(
    monkeypatch: pytest.MonkeyPatch, loaded_engines: Any, tmp_path: Path
) -> None:
    gone = tmp_path / "gone" / "voice.onnx"
    slots = parse_chained_table(
        {"tts": [{"engine": "piper", "model": str(gone), "name": "piper-gone"}, "piper"]},
        "agent.toml",
    )
    spec = LiveCallSpec(mode=Mode.CHAINED, record_dir=tmp_path / "calls", slots=slots)
    room = FakeRoom()
    alice = room.human_joins("Alice")
    with installed(monkeypatch, room):
        call = DailyCall(RoomOptions(room.url), spec)
        task = asyncio.create_task(call.run())
        try:
            await until(lambda: room.loud_ms() > 1000 or task.done(), 60)  # the greeting
            heard_ms = room.loud_ms()
        finally:
            alice.leave()
            ended = await asyncio.wait_for(task, 20)

    assert heard_ms > 1000 and ended is CallEnd.HUNG_UP
    (handoff, *_) = call.call.timeline.of(EventKind.SLOT_HANDOFF)
    assert (handoff.data["slot"], handoff.data["from"], handoff.data["to"]) == (
        "tts",
        "piper-gone",
        "piper",
    )
    assert str(gone) in handoff.data["detail"]
    lines = (tmp_path / "calls" / call.call.call_id / "timeline.jsonl").read_text().splitlines()
    assert any(json.loads(x)["type"] == "slot_handoff" for x in lines)
    assert not call.call.timeline.of(EventKind.SLOT_FAILED)
