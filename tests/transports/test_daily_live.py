"""Opt-in: the agent in a real Daily room, heard by a second daily-python client.

daily-python has no offline mode, so this runs only where Daily is reachable
and you say which room to use; everywhere else it is skipped, loudly::

    DAILY_API_KEY=... DAILY_ROOM_URL=https://YOUR-TEAM.daily.co/ROOM \\
    [DAILY_ROOM_TOKEN=...] .venv/bin/pytest -q tests/transports/test_daily_live.py -s

The agent joins as ``voxpipe`` (``voxpipe daily``'s own path: ``DailyCall`` on
pipecat's ``DailyTransport``) with the embedded Realtime server answering from
a script in the local voice. A second daily-python client, "Tester", joins
with a virtual microphone, waits for the greeting, plays a recorded question
into the room, records what the agent says back through an audio renderer,
and has local Whisper transcribe it: the answer must be heard. Tester then
leaves, and the agent's call must end (the last human left).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hearing import assert_heard
from phone_calls import until

from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.transports.daily.call import DailyCall, RoomOptions
from voxpipe.transports.realtime_server import ScriptedBrain

ROOM_URL = os.environ.get("DAILY_ROOM_URL", "")
pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(
        not (os.environ.get("DAILY_API_KEY") and ROOM_URL),
        reason="live Daily test: set DAILY_API_KEY and DAILY_ROOM_URL (and DAILY_ROOM_TOKEN "
        "for a private room) to run it against a real room",
    ),
]

ANSWER = "Our pharmacy opens at nine in the morning on Saturday."
QUESTION = "What time does the pharmacy open on Saturday?"
MIC = "voxpipe-tester-mic"
RATE = 16_000


class Tester:
    """A second daily-python client: a virtual microphone in, the agent's audio out."""

    def __init__(self, agent_name: str) -> None:
        from daily import CallClient, Daily, EventHandler

        tester = self

        class Events(EventHandler):  # type: ignore[misc]
            def on_participant_joined(self, participant: Any) -> None:
                if participant.get("info", {}).get("userName") == agent_name:
                    tester.listen(participant["id"])

        # Blocking writes: each returns once the device took the audio, at real time.
        self.mic = Daily.create_microphone_device(
            MIC, sample_rate=RATE, channels=1, non_blocking=False
        )
        self.events = Events()
        self.client = CallClient(event_handler=self.events)
        self.heard = bytearray()
        self.joined = threading.Event()
        self._lock = threading.Lock()

    def join(self, url: str, token: str | None) -> None:
        settings = {
            "inputs": {
                "camera": False,
                "microphone": {"isEnabled": True, "settings": {"deviceId": MIC}},
            }
        }
        self.client.set_user_name("Tester")
        self.client.join(url, token, client_settings=settings, completion=self._joined)

    def _joined(self, data: Any, error: Any) -> None:
        assert error is None, error
        for participant_id, participant in self.client.participants().items():
            if participant_id != "local" and participant.get("info", {}).get("userName"):
                self.listen(participant_id)
        self.joined.set()

    def listen(self, participant_id: str) -> None:
        self.client.set_audio_renderer(participant_id, self._audio, sample_rate=RATE)

    def _audio(self, _participant_id: str, audio: Any, _source: str) -> None:
        with self._lock:
            self.heard.extend(audio.audio_frames)

    def loud_ms(self) -> float:
        with self._lock:
            samples = np.frombuffer(bytes(self.heard), dtype="<i2")
        return 20.0 * sum(
            1
            for c in np.array_split(samples, max(1, len(samples) // 320))
            if c.size and np.abs(c).max() > 1000
        )

    def speak(self, pcm16: bytes) -> None:
        """Play ``pcm16`` into the room at real time (blocking)."""
        for at in range(0, len(pcm16), 640):
            self.mic.write_frames(pcm16[at : at + 640])

    def quiet_for(self, ms: int) -> bool:
        """The agent has said nothing loud in the last ``ms`` heard."""
        with self._lock:
            tail = np.frombuffer(bytes(self.heard[-RATE * 2 * ms // 1000 :]), dtype="<i2")
        return tail.size > 0 and int(np.abs(tail).max()) < 1000

    def leave(self) -> None:
        done = threading.Event()
        self.client.leave(completion=lambda _error: done.set())
        done.wait(10)
        self.client.release()


async def test_the_agent_answers_a_question_asked_in_a_real_room(
    make_speech: Any, tmp_path: Path
) -> None:
    from voxpipe.engines import make_tts
    from voxpipe.engines.stt import WhisperEngine

    whisper = WhisperEngine()
    question, _ = sf.read(str(make_speech(QUESTION, lead_ms=0, tail_ms=1500)), dtype="int16")
    brain = ScriptedBrain(["Hello! How can I help you today?", ANSWER], voice=make_tts())
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")
        options = RoomOptions(ROOM_URL, os.environ.get("DAILY_ROOM_TOKEN"), "voxpipe")
        call = DailyCall(options, spec)  # initialises daily-python before the tester's client
        task = asyncio.create_task(call.run())
        await until(lambda: call.transport.joined_ms is not None or task.done(), 30)
        tester = Tester("voxpipe")
        tester.join(ROOM_URL, os.environ.get("DAILY_ROOM_TOKEN"))
        await asyncio.to_thread(tester.joined.wait, 30)
        await until(lambda: tester.loud_ms() > 1000, 30)  # greeted
        await until(lambda: tester.quiet_for(700), 30)  # the greeting is over
        before = len(tester.heard)
        await asyncio.to_thread(tester.speak, np.asarray(question, dtype="<i2").tobytes())
        await until(lambda: len(tester.heard) - before > RATE * 2 * 8, 40)  # 8 s of answer
        answer = bytes(tester.heard[before:])
        await asyncio.to_thread(tester.leave)
        ended = await asyncio.wait_for(task, 20)
    heard = whisper.transcribe(answer, RATE)
    print(f"\nthe agent said: {heard!r}")
    assert_heard(ANSWER, heard)
    assert ended is CallEnd.HUNG_UP  # the last human left
