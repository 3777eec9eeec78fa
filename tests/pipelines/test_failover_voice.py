"""The voice across a brain switch: the chained brain answers in the realtime session's voice.

The realtime side is voxpipe's server (the session's voice is what its
``session.update`` set); the chained side is OpenAI's three HTTP services,
played by a loopback stand-in (OpenAI is the remote provider) that refuses a
voice its speech endpoint does not have, as OpenAI does.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from failover_calls import failover_call
from fake_openai import API_KEY as OPENAI_KEY
from fake_openai import REPLY, running_fake_openai
from loguru import logger
from pipecat.services.openai.tts import OpenAITTSService

from voxpipe.agents import parse_agents
from voxpipe.call.events import ResponseCreated
from voxpipe.call.failover import Brain, FailoverConfig, SwitchReason
from voxpipe.call.state import CallState
from voxpipe.engines import LocalEngines, shared_tts
from voxpipe.errors import ConfigError
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.failover import build_failover_pipeline
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.processors.local.tts import LocalTTSService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import SendError
from voxpipe.transports.realtime_server.local_brain import LocalBrain

PATIENT = FailoverConfig(first_audio_deadline_ms=30_000, stall_ms=30_000)
SERVER = "ws://127.0.0.1:9/v1/realtime"  # never connected to: these graphs are only built


@pytest.mark.models
async def test_the_chained_brain_on_openai_answers_in_the_realtime_sessions_voice(
    make_speech: Any, loaded_engines: LocalEngines, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        make_speech("Hello there.", lead_ms=500, tail_ms=1500),
        make_speech("What time do you open on Saturday?", lead_ms=300, tail_ms=1500),
    ]
    async with running_fake_openai() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
        async with failover_call(
            lines,
            loaded_engines,
            script=["Hello, how can I help?"],
            failover=PATIENT,
            chained={},  # with a key: OpenAI's STT, LLM and TTS
            voice="marin",
        ) as call:
            await call.until(lambda: bool(call.of(ResponseCreated)), 60, "the first reply")
            sessions = list(call.server.server.live_sessions)
            assert [s.core.config.voice for s in sessions] == ["marin"]  # what session.update set
            await call.until(
                lambda: call.service.machine.state is CallState.LISTENING, 30, "the reply heard"
            )
            call.server.arm(
                SendError(
                    error_type="insufficient_quota",
                    code="insufficient_quota",
                    message="insufficient_quota",
                )
            )
            await call.until(lambda: bool(call.brain.switched), 30, "the switch")
            call.caller.cue()
            await call.until(lambda: bool(fake.spoken), 90, "the chained answer spoken")

    switch = call.brain.switched[0]
    assert (switch.current, switch.reason) == (Brain.CHAINED, SwitchReason.QUOTA_EXHAUSTED)
    assert fake.spoken[0] == REPLY
    assert fake.voices and set(fake.voices) == {"marin"}, fake.voices
    tts = call.graph.services["tts"]
    assert isinstance(tts, OpenAITTSService) and tts._settings.voice == "marin"


def test_a_custom_realtime_voice_leaves_the_chained_voice_at_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    try:
        graph = build_failover_pipeline(
            FileTransport(None), server_url=SERVER, api_key="k", voice="voice_1234", chained={}
        )
    finally:
        logger.remove(sink)
    tts = graph.services["tts"]
    assert isinstance(tts, OpenAITTSService) and tts._settings.voice == "alloy"
    assert any("'voice_1234' is not one of OpenAI's speech voices" in line for line in seen)


@pytest.mark.models
async def test_on_the_embedded_default_both_brains_speak_with_the_same_local_voice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    graph = build_failover_pipeline(
        FileTransport(None), server_url=SERVER, api_key="k", voice="marin", chained={}
    )
    tts = graph.services["tts"]
    assert isinstance(tts, LocalTTSService)  # a realtime voice name is no local voice
    # The embedded server's local brain speaks with shared_tts(its tts, "auto" by default);
    # so does the chained brain: the one engine of this process.
    server_voice = inspect.signature(LocalBrain.load).parameters["tts"].default
    assert await shared_tts(tts._voice_kind) is await shared_tts(server_voice)


def test_a_realtime_voice_goes_in_the_session_and_the_agents_voice_is_used() -> None:
    graph = build_realtime_pipeline(
        FileTransport(None), server_url=SERVER, api_key="k", voice="cedar"
    )
    assert graph.brain.settings.session_properties.audio.output.voice == "cedar"  # type: ignore[union-attr]
    default = build_realtime_pipeline(FileTransport(None), server_url=SERVER, api_key="k")
    output = default.brain.settings.session_properties.audio.output  # type: ignore[union-attr]
    assert output is None or output.voice is None  # the provider's default
    agents = parse_agents(
        {"start": "desk", "agents": {"desk": {"instructions": "Greet.", "voice": "sage"}}}, "t"
    )
    assert agents is not None
    graph = build_realtime_pipeline(
        FileTransport(None), server_url=SERVER, api_key="k", agents=agents
    )
    assert graph.brain.settings.session_properties.audio.output.voice == "sage"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="a realtime call has one voice"):
        build_realtime_pipeline(
            FileTransport(None), server_url=SERVER, api_key="k", agents=agents, voice="cedar"
        )
    with pytest.raises(ConfigError, match="not a voice name"):
        build_realtime_pipeline(FileTransport(None), server_url=SERVER, api_key="k", voice=" ")


def test_an_openai_voice_the_speech_service_lacks_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    graph = build_chained_pipeline(FileTransport(None), openai_voice="coral")
    tts = graph.services["tts"]
    assert isinstance(tts, OpenAITTSService) and tts._settings.voice == "coral"
    with pytest.raises(ConfigError, match="has no voice 'voice_1234'"):
        build_chained_pipeline(FileTransport(None), openai_voice="voice_1234")
