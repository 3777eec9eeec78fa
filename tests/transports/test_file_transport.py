"""The file transport against real pipecat pipelines: decoding, pacing, playback clock."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
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
    """Notes when each input audio frame went past (on ``now_ms``), and passes everything on."""

    def __init__(self, now_ms: Callable[[], float]) -> None:
        super().__init__()
        self._now_ms = now_ms
        self.audio_times_ms: list[float] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio_times_ms.append(self._now_ms())
        await self.push_frame(frame, direction)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls what the transport wrote
            await asyncio.sleep(0.01)


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


async def last_frame_at_ms(path: Path, *, paced: bool) -> float:
    """When a 1 s recording's last frame went past, from the moment playing began."""
    transport = FileTransport(path, paced=paced, trailing_silence_ms=0)
    recorder = Recorder(transport.clock.now_ms)
    async with CallSession(Pipeline([transport.input(), recorder, transport.output()])):
        await until(lambda: len(recorder.audio_times_ms) >= 50)  # 1 s in 20 ms frames
    return recorder.audio_times_ms[49] - transport.input_started_ms


async def test_paced_input_plays_in_real_time_and_unpaced_does_not(tmp_path: Path) -> None:
    path = tone(tmp_path / "one.wav", rate=16_000, channels=1, seconds=1.0)
    last_frame_ms = {paced: await last_frame_at_ms(path, paced=paced) for paced in (True, False)}
    # Paced, a frame is never pushed before its slot (980 ms for the 50th): that
    # bound holds at any load. Event-loop lag can only make it late; 400 ms is far
    # more than a loaded 2-core machine adds, and far less than the second it takes.
    assert 975 < last_frame_ms[True] < 980 + 400, last_frame_ms
    # Unpaced, the whole second goes through at once (9 ms here at load 6).
    assert last_frame_ms[False] < 500, last_frame_ms


async def test_output_playback_clock_counts_only_what_was_heard(tmp_path: Path) -> None:
    transport = FileTransport(paced=True)
    two_seconds = np.full(48_000, 1000, dtype="<i2").tobytes()

    def written_ms() -> float:
        return sum(w.duration_ms for w in transport.written)

    async with CallSession(Pipeline([transport.input(), transport.output()])) as call:
        await call.queue(PlaybackMarkerFrame(utterance_id="item_1"))
        for i in range(0, len(two_seconds), 960):
            await call.queue(TTSAudioRawFrame(two_seconds[i : i + 960], 24_000, 1))
        await until(lambda: written_ms() >= 400)
        await call.queue(InterruptionFrame())
        await until(lambda: bool(transport.interruptions_ms))
        # A cut that did not stop the output would go on writing in real time;
        # give it the time for 15 more chunks to show it does not.
        await asyncio.sleep(0.3)
        cut_ms = transport.interruptions_ms[0]
        played = transport.playback.played_ms("item_1", transport.clock.now_ms())
    # Heard what was written before the cut: the 400 ms waited for (the last chunk
    # perhaps cut short), whatever played while the cut travelled (event-loop lag),
    # and far short of the 2000 ms queued, which a clock counting received audio reports.
    assert 380 < played < 1500, played
    assert all(w.at_ms <= cut_ms for w in transport.written)
    assert abs(transport.bot.duration_ms - (transport.written[-1].at_ms + 20)) < 25
    assert sum(w.duration_ms for w in transport.written) == pytest.approx(played, abs=25)


def test_rates_outside_the_supported_range_name_the_fix(tmp_path: Path) -> None:
    path = tone(tmp_path / "low.wav", rate=4_000, channels=1, seconds=0.5)
    with pytest.raises(AudioFormatError, match="resample the file") as err:
        load_audio(path, 16_000)
    assert str(path) in str(err.value)
