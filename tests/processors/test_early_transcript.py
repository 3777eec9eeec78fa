"""Local Whisper begins a segment's transcript at the caller's pause, before the VAD's stop.

With ``TurnSettings.early_transcript_ms`` the user aggregator's VAD tells the
STT when the caller has paused that long in mid-speech; Whisper starts on the
audio so far there, and when the VAD's stop follows with nothing said since,
that transcript is the segment's (ready ``stop_secs - early_transcript_ms``
sooner). A pause the caller talks through must never leave its partial
transcript in the turn.

Real speech (the local voice) played in real time through the file transport
into local Whisper and pipecat's user aggregator with voxpipe's turn settings;
Whisper's runs are counted on the real engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipecat.audio.vad.vad_analyzer import VADState
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from realtime_calls import compose

from voxpipe.engines import WhisperEngine, shared_stt
from voxpipe.evaluation import word_error_rate
from voxpipe.pipelines.chained import TurnSettings, build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.local.stt import LocalWhisperSTTService
from voxpipe.processors.local.turn_clock import CallerSilenceVAD
from voxpipe.transports.file import FileTransport

EARLY_MS = 60.0


class CountedWhisper:
    """The process's real Whisper engine, its runs counted."""

    def __init__(self, engine: WhisperEngine) -> None:
        self.engine = engine
        self.runs = 0

    def transcribe(self, pcm16: bytes, sample_rate: int = 16_000) -> str:
        self.runs += 1
        return self.engine.transcribe(pcm16, sample_rate)


async def _heard(recording: Path) -> tuple[list[str], LocalWhisperSTTService, CountedWhisper, Any]:
    """Each segment's transcript over the recording said in real time; the STT, Whisper, VAD."""
    whisper = CountedWhisper(await shared_stt())
    stt = LocalWhisperSTTService(engine=whisper)  # type: ignore[arg-type]
    params = TurnSettings(early_transcript_ms=EARLY_MS).user_params()
    vad = params.vad_analyzer
    assert isinstance(vad, CallerSilenceVAD)
    stt.transcribe_at_pauses(vad)
    texts: list[str] = []
    stt.add_transcript_listener(texts.append)
    pair = LLMContextAggregatorPair(LLMContext(), user_params=params)
    transport = FileTransport(recording, paced=True, trailing_silence_ms=1_500)
    finished = asyncio.Event()

    @transport.event_handler("on_input_finished")
    async def _done(_t: FileTransport) -> None:
        finished.set()

    async with CallSession(Pipeline([transport.input(), stt, pair.user()]), end_timeout_secs=30):
        async with asyncio.timeout(60):
            await finished.wait()
            while stt._segments_owed:  # the last segment's transcript is still being made  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    return texts, stt, whisper, vad


async def test_the_transcript_begun_at_the_pause_is_the_segments(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    line = "What time does the pharmacy open on Saturday?"
    compose(make_speech, [400, line, 300], recording)
    texts, stt, whisper, vad = await _heard(recording)
    assert len(texts) == 1, texts
    assert word_error_rate(line, texts[0]) <= 0.2, texts
    # The stop found the transcript begun at the pause and did not run Whisper again: one
    # run per pause told (a pause talked through cost one more, counted as a resume).
    assert stt.early_used == 1
    assert whisper.runs == 1 + vad.resumes


async def test_a_pause_talked_through_leaves_no_partial_transcript(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    # The two clips' own silences make a ~120 ms pause: past EARLY_MS, so Whisper begins on
    # "What time do you open"; short of the VAD's 200 ms stop, so the caller goes on in the
    # same segment (150 ms more silence between them made the VAD stop: two segments).
    parts: list[str | int] = [400, "What time do you open", "on Saturday morning?", 300]
    compose(make_speech, parts, recording)
    texts, stt, whisper, vad = await _heard(recording)
    assert vad.resumes >= 1, "the mid-line pause was never told"
    assert len(texts) == 1, texts
    said = "What time do you open on Saturday morning?"
    assert "saturday" in texts[0].lower() and word_error_rate(said, texts[0]) <= 0.25, texts
    assert stt.early_used == 1  # the pause at the line's end
    assert whisper.runs == 1 + vad.resumes  # the talked-through pause's run was dropped


def _vad_told(states: list[VADState], pause_after_ms: float | None = 50.0) -> tuple[int, int]:
    """How many pauses a VAD going through ``states`` (20 ms each) told, and its resumes."""
    vad = CallerSilenceVAD(pause_after_ms=pause_after_ms)
    told: list[None] = []
    vad.add_pause_listener(lambda: told.append(None))
    for state in states:
        vad._count(state, 20.0)
    return len(told), vad.resumes


def test_a_pause_is_told_once_when_it_lasts_long_enough() -> None:
    speaking, stopping = [VADState.SPEAKING] * 5, VADState.STOPPING
    # Two frames (40 ms) of pause: not told; three (60 ms): told once, however long it lasts.
    assert _vad_told([*speaking, stopping, stopping, *speaking]) == (0, 0)
    assert _vad_told([*speaking, *[stopping] * 8, VADState.QUIET]) == (1, 0)
    # Talked through, then a second pause: each told once, the first a resume.
    assert _vad_told([*speaking, *[stopping] * 3, *speaking, *[stopping] * 4]) == (2, 1)
    # A pause before any speech, or no threshold at all: never told.
    assert _vad_told([VADState.QUIET, VADState.STARTING, VADState.QUIET]) == (0, 0)
    assert _vad_told([*speaking, *[stopping] * 20], pause_after_ms=None) == (0, 0)


def test_the_chained_graph_begins_transcripts_at_pauses_by_default(make_speech: Any) -> None:
    transport = FileTransport(make_speech("Hello."))
    graph = build_chained_pipeline(transport, openai_api_key="")
    stt = graph.services["stt"]
    assert isinstance(stt, LocalWhisperSTTService)
    vad = stt._pause_vad
    assert isinstance(vad, CallerSilenceVAD)
    assert vad.pause_after_ms == TurnSettings().early_transcript_ms == 60.0
    # None: transcripts begin at the VAD's stop, as before.
    at_stop = TurnSettings(early_transcript_ms=None)
    off = build_chained_pipeline(transport, openai_api_key="", turn=at_stop)
    assert off.services["stt"]._pause_vad is None
