"""pipecat's own ``OpenAIRealtimeLLMService`` holds a conversation with voxpipe's server."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from test_realtime_server_support import (
    API_KEY,
    pipecat_realtime,
    read_pcm16,
    send_audio,
    silence,
)

from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

REPLY = "Paris is sunny today."


async def test_pipecat_realtime_service_talks_to_the_server(make_speech: Any) -> None:
    speech = read_pcm16(
        make_speech("What is the weather in Paris?", rate=24_000, lead_ms=400, tail_ms=0)
    )
    config = ServerConfig(api_key=API_KEY)
    async with (
        running_realtime_server(config=config, brain=ScriptedBrain([REPLY], pace=4)) as srv,
        pipecat_realtime(srv.realtime_url) as (call, output),
    ):
        await send_audio(call, speech + silence(1500))
        # Waited for (a fixed 3 s once bounded it): the whole answer, then its end.
        await output.until(lambda: output.count(LLMFullResponseEndFrame) >= 1)
    assert not output.errors, output.errors
    spoken = b"".join(f.audio for f in output.down if isinstance(f, TTSAudioRawFrame))
    assert len(spoken) / 48 > 1000  # over a second of the assistant's voice
    kinds = [type(f) for f in output.down]
    assert TTSStartedFrame in kinds and TTSStoppedFrame in kinds
    # Server VAD's speech_started/stopped reach the pipeline as user-turn proposals.
    assert ProposedUserStartedSpeakingFrame in kinds and ProposedUserStoppedSpeakingFrame in kinds
    assert output.said().split() == REPLY.split()


async def test_pipecat_barge_in_truncates_without_a_fatal_error(make_speech: Any) -> None:
    first = read_pcm16(make_speech("Tell me a long story.", rate=24_000, lead_ms=400, tail_ms=0))
    second = read_pcm16(make_speech("Stop, what time is it?", rate=24_000, lead_ms=0, tail_ms=0))
    long_reply = " ".join(["Once upon a time there was a very long story."] * 5)
    config = ServerConfig(api_key=API_KEY)
    brain = ScriptedBrain([long_reply, REPLY], pace=1.5)
    async with (
        running_realtime_server(config=config, brain=brain) as srv,
        pipecat_realtime(srv.realtime_url) as (call, output),
    ):
        await send_audio(call, first + silence(1200))
        # The barge-in comes while the story is being told: once its audio flows,
        # not after a fixed 1.5 s (which a slow start could leave before it began).
        await output.until(lambda: output.count(TTSAudioRawFrame) >= 10)
        await send_audio(call, second + silence(1200))
        await output.until(lambda: output.count(LLMFullResponseEndFrame) >= 2)
    assert not output.errors, output.errors  # pipecat treats any server error as fatal
    said = output.said().split()
    assert said[-len(REPLY.split()) :] == REPLY.split()  # the barge-in got its answer
    assert len(said) < len(long_reply.split()) + len(REPLY.split())  # the story was cut short
