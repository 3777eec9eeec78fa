"""pipecat's own ``OpenAIRealtimeLLMService`` holds a conversation with voxpipe's server."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import (
    ErrorFrame,
    InputAudioRawFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.tests.utils import SleepFrame, run_test
from test_realtime_server_support import API_KEY, read_pcm16, silence

from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

REPLY = "Paris is sunny today."
FRAME_BYTES = 960  # 20 ms of 24 kHz PCM16


async def test_pipecat_realtime_service_talks_to_the_server(make_speech: Any) -> None:
    speech = read_pcm16(
        make_speech("What is the weather in Paris?", rate=24_000, lead_ms=400, tail_ms=0)
    )
    audio = speech + silence(1500)
    frames: list[Any] = [
        InputAudioRawFrame(audio=audio[i : i + FRAME_BYTES], sample_rate=24_000, num_channels=1)
        for i in range(0, len(audio), FRAME_BYTES)
    ]
    config = ServerConfig(api_key=API_KEY)
    async with running_realtime_server(config=config, brain=ScriptedBrain([REPLY], pace=4)) as srv:
        service = OpenAIRealtimeLLMService(api_key=API_KEY, base_url=srv.realtime_url)
        down, up = await run_test(
            service,
            frames_to_send=[SleepFrame(0.5), *frames, SleepFrame(3.0)],
            pipeline_params=PipelineParams(
                audio_in_sample_rate=24_000, audio_out_sample_rate=24_000
            ),
            start_timeout=5.0,
        )
    errors = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    assert not errors, errors
    spoken = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert len(spoken) / 48 > 1000  # over a second of the assistant's voice
    kinds = [type(f) for f in down]
    assert TTSStartedFrame in kinds and TTSStoppedFrame in kinds
    # Server VAD's speech_started/stopped reach the pipeline as user-turn proposals.
    assert ProposedUserStartedSpeakingFrame in kinds and ProposedUserStoppedSpeakingFrame in kinds
    said = "".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert said.split() == REPLY.split()


async def test_pipecat_barge_in_truncates_without_a_fatal_error(make_speech: Any) -> None:
    first = read_pcm16(make_speech("Tell me a long story.", rate=24_000, lead_ms=400, tail_ms=0))
    second = read_pcm16(make_speech("Stop, what time is it?", rate=24_000, lead_ms=0, tail_ms=0))
    long_reply = " ".join(["Once upon a time there was a very long story."] * 5)

    def audio_frames(pcm: bytes) -> list[Any]:
        return [
            InputAudioRawFrame(audio=pcm[i : i + FRAME_BYTES], sample_rate=24_000, num_channels=1)
            for i in range(0, len(pcm), FRAME_BYTES)
        ]

    config = ServerConfig(api_key=API_KEY)
    brain = ScriptedBrain([long_reply, REPLY], pace=1.5)
    async with running_realtime_server(config=config, brain=brain) as srv:
        service = OpenAIRealtimeLLMService(api_key=API_KEY, base_url=srv.realtime_url)
        down, up = await run_test(
            service,
            frames_to_send=[
                SleepFrame(0.5),
                *audio_frames(first + silence(1200)),
                SleepFrame(1.5),
                *audio_frames(second + silence(1200)),
                SleepFrame(3.0),
            ],
            pipeline_params=PipelineParams(
                audio_in_sample_rate=24_000, audio_out_sample_rate=24_000
            ),
            start_timeout=5.0,
        )
    errors = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    assert not errors, errors  # pipecat treats any server error as fatal
    said = "".join(f.text for f in down if isinstance(f, TTSTextFrame)).split()
    assert said[-len(REPLY.split()) :] == REPLY.split()  # the barge-in got its answer
    assert len(said) < len(long_reply.split()) + len(REPLY.split())  # the story was cut short
