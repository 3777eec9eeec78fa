"""The file transport against real pipecat pipelines: decoding, pacing, playback clock."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import Frame, InputAudioRawFrame, InterruptionFrame, TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.errors import AudioFormatError
from voxpipe.frames import PlaybackMarkerFrame
from voxpipe.pipelines.session import CallSession
from voxpipe.transports.audio_file import load_audio
from voxpipe.transports.file import FileTransport


class Recorder(FrameProcessor):
    """Notes when each input audio frame went past, and passes everything on."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_times: list[float] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio_times.append(time.monotonic())
        await self.push_frame(frame, direction)


def tone(path: Path, *, rate: int, channels: int, seconds: float, fmt: str = "WAV") -> Path:
    import soundfile as sf

    t = np.arange(int(rate * seconds)) / rate
    data = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), np.repeat(data[:, None], channels, axis=1), rate, format=fmt)
    return path


@pytest.mark.parametrize(
    ("rate", "channels", "fmt"),
    [(8_000, 1, "WAV"), (44_100, 2, "WAV"), (48_000, 1, "FLAC"), (22_050, 2, "FLAC")],
)
def test_any_common_rate_and_layout_decodes_to_pipeline_rate(
    tmp_path: Path, rate: int, channels: int, fmt: str
) -> None:
    path = tone(tmp_path / f"a.{fmt.lower()}", rate=rate, channels=channels, seconds=1.0, fmt=fmt)
    audio = load_audio(path, 16_000)
    assert audio.sample_rate == 16_000
    assert audio.source_rate == rate and audio.source_channels == channels
    assert abs(audio.duration_ms - 1000) < 5
    peak = np.abs(np.frombuffer(audio.pcm16, dtype="<i2")).max()
    assert 0.25 * 32767 < peak < 0.35 * 32767  # the tone survives resampling and downmix


def test_bad_files_fail_with_the_file_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    good = tone(tmp_path / "good.wav", rate=16_000, channels=1, seconds=1.0)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # header cut short
    for path in (text, empty, truncated, tmp_path / "missing.wav"):
        with pytest.raises(AudioFormatError) as err:
            load_audio(path, 16_000)
        assert str(path) in str(err.value)


def test_odd_byte_count_and_clipping_are_kept_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "clipped.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(np.full(1600, 32767, dtype="<i2").tobytes())
    audio = load_audio(path, 16_000)
    samples = np.frombuffer(audio.pcm16, dtype="<i2")
    assert samples.size == 1600 and samples.min() >= 32700


async def test_paced_input_plays_in_real_time_and_unpaced_does_not(tmp_path: Path) -> None:
    path = tone(tmp_path / "one.wav", rate=16_000, channels=1, seconds=1.0)
    durations = {}
    for paced in (True, False):
        transport = FileTransport(path, paced=paced, trailing_silence_ms=0)
        recorder = Recorder()
        finished = asyncio.Event()

        @transport.event_handler("on_input_finished")
        async def _done(_t: FileTransport, finished: asyncio.Event = finished) -> None:
            finished.set()

        async with CallSession(Pipeline([transport.input(), recorder, transport.output()])):
            await asyncio.wait_for(finished.wait(), 10)
            await asyncio.sleep(0.1)
        times = recorder.audio_times
        assert len(times) >= 50  # 1 s in 20 ms frames
        durations[paced] = times[49] - times[0]
    assert 0.9 < durations[True] < 1.3
    assert durations[False] < 0.5


async def test_output_playback_clock_counts_only_what_was_heard(tmp_path: Path) -> None:
    transport = FileTransport(paced=True)
    one_second = np.full(24_000, 1000, dtype="<i2").tobytes()
    async with CallSession(Pipeline([transport.input(), transport.output()])) as call:
        await call.queue(PlaybackMarkerFrame(utterance_id="item_1"))
        for i in range(0, len(one_second), 960):
            await call.queue(TTSAudioRawFrame(one_second[i : i + 960], 24_000, 1))
        await asyncio.sleep(0.45)
        await call.queue(InterruptionFrame())
        await asyncio.sleep(0.3)
        cut_ms = transport.interruptions_ms[0]
        played = transport.playback.played_ms("item_1", transport.clock.now_ms())
    # Heard about 450 ms of a 1000 ms utterance; nothing written after the cut.
    assert 300 < played < 600, played
    assert all(w.at_ms <= cut_ms for w in transport.written)
    assert abs(transport.bot.duration_ms - (transport.written[-1].at_ms + 20)) < 25
    assert sum(w.duration_ms for w in transport.written) == pytest.approx(played, abs=25)


def test_rates_outside_the_supported_range_name_the_fix(tmp_path: Path) -> None:
    path = tone(tmp_path / "low.wav", rate=4_000, channels=1, seconds=0.5)
    with pytest.raises(AudioFormatError, match="resample the file") as err:
        load_audio(path, 16_000)
    assert str(path) in str(err.value)
