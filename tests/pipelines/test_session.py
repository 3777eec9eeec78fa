"""Running a call to its natural end: the recording has played out and the bot is quiet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)

from voxpipe import (
    CallSession,
    ConfigError,
    FileTransport,
    ServerConfig,
    build_chained_pipeline,
    build_realtime_pipeline,
    running_realtime_server,
)
from voxpipe.pipelines.session import BotActivity
from voxpipe.transports.realtime_server import ScriptedBrain

KEY = "session-test"
REPLY = "We open at nine on Saturday."
QUIET, ANSWER = 2.5, 30.0

USER_DONE = UserStoppedSpeakingFrame
THINKING, THOUGHT = LLMFullResponseStartFrame, LLMFullResponseEndFrame
SPEAKS, SILENT = BotStartedSpeakingFrame, BotStoppedSpeakingFrame

# Frames seen so far -> how long the call's end waits for the next change (None: no limit).
WAITS: list[tuple[list[type[Frame]], float | None]] = [
    ([], QUIET),
    ([USER_DONE], ANSWER),  # an answer is owed: wait up to the answer timeout
    ([USER_DONE, THINKING], None),  # a reply is being generated: however long it takes
    ([USER_DONE, THINKING, THOUGHT], ANSWER),  # generated (a tool call?), not yet spoken
    ([USER_DONE, THINKING, THOUGHT, THINKING, SPEAKS], None),
    ([USER_DONE, THINKING, SPEAKS, THOUGHT], QUIET),  # speaking: the bot is heard
    ([USER_DONE, THINKING, SPEAKS, THOUGHT, SILENT], QUIET),
    ([USER_DONE, THINKING, InterruptionFrame], ANSWER),  # a barge-in ended the generation
    ([USER_DONE, THINKING, SPEAKS, THOUGHT, SILENT, USER_DONE], ANSWER),
]


@pytest.mark.parametrize(("frames", "wait"), WAITS)
def test_the_end_waits_for_a_reply_being_made_and_gives_up_on_one_never_started(
    frames: list[type[Frame]], wait: float | None
) -> None:
    activity = BotActivity()
    for kind in frames:
        activity.note(kind())
    assert activity.next_wait(QUIET, ANSWER) == wait


@pytest.mark.models  # the caller's recording is spoken by the local TTS
async def test_a_realtime_call_on_a_recording_runs_until_the_bot_has_answered(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = make_speech("What time do you open on Saturday?", lead_ms=300, tail_ms=3000)
    brain = ScriptedBrain([REPLY], pace=4.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as server:
        transport = FileTransport(caller, paced=True)
        graph = build_realtime_pipeline(transport, server_url=server.realtime_url, api_key=KEY)
        async with CallSession(graph) as call:
            await call.run_until_input_ends(quiet_secs=1.0, max_secs=60)
            ended_ms = transport.clock.now_ms()
            assert not call.finished  # the wait never ends the call itself

    # The whole recording was heard, then the answer, then a second of quiet.
    recording_ms = sf.info(str(caller)).duration * 1000
    assert transport.input_finished_ms is not None
    assert transport.input_finished_ms - transport.input_started_ms >= recording_ms - 20
    assert transport.written, "the bot never answered"
    last = transport.written[-1]
    assert ended_ms - (last.at_ms + last.duration_ms) >= 1000 - 50
    bot = np.frombuffer(transport.bot_pcm(), dtype="<i2")
    assert np.abs(bot).max() > 1000  # the answer is audible, not silence
    messages = graph.context.get_messages()
    assert any(m.get("role") == "assistant" and m.get("content") == REPLY for m in messages)


async def test_a_transport_whose_input_never_ends_is_refused_with_a_config_error() -> None:
    live = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(), host="127.0.0.1", port=0
    )
    session = CallSession(build_chained_pipeline(live, openai_api_key="sk-never-used"))
    with pytest.raises(ConfigError) as refused:
        await session.run_until_input_ends()
    assert "input never ends" in str(refused.value)


async def test_a_bare_pipeline_or_a_session_not_started_is_refused(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    sf.write(str(silence), np.zeros(16_000, dtype=np.float32), 16_000)
    graph = build_chained_pipeline(FileTransport(silence), openai_api_key="sk-never-used")
    with pytest.raises(ConfigError) as bare:
        await CallSession(graph.pipeline).run_until_input_ends()
    assert "pass the VoiceGraph" in str(bare.value)
    started = time.monotonic()
    with pytest.raises(ConfigError) as idle:
        await CallSession(graph).run_until_input_ends()
    assert "async with" in str(idle.value)
    assert time.monotonic() - started < 1.0  # refused at once, not after a wait


async def test_models_load_before_the_start_timeout_counts(tmp_path: Path) -> None:
    # On a loaded machine loading the local models alone once took longer than the
    # 60 s start timeout, and the README's example failed to start.
    import asyncio

    from pipecat.processors.frame_processor import FrameProcessor

    class SlowToLoad(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.loaded = False

        async def preload(self) -> None:
            await asyncio.sleep(1.5)
            self.loaded = True

    silence = tmp_path / "silence.wav"
    sf.write(str(silence), np.zeros(16_000, dtype=np.float32), 16_000)
    graph = build_chained_pipeline(FileTransport(silence), openai_api_key="sk-never-used")
    slow = SlowToLoad()
    graph.services["slow"] = slow
    async with CallSession(graph, start_timeout_secs=1.0):
        assert slow.loaded
