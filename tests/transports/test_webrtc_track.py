"""The outgoing WebRTC track keeps a reply whole when it runs behind its clock.

A writer does what pipecat's output does (queue a 20 ms chunk, wait until the
track took it, a few loop turns to fetch the next); a sender does what
aiortc's does (two 10 ms frames per packet, then a loop turn to send it). A
track behind its clock sends back to back: pipecat's (``writer_grace_s=0``)
fills silence after each chunk, the steady track waits for the writer. No
network: the track is fed and read directly, its clock injected.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from voxpipe.transports.webrtc.track import SteadyAudioTrack

RATE = 24_000
CHUNK = np.full(RATE // 50, 1000, dtype="<i2").tobytes()  # 20 ms of audio, no zero in it
CHUNKS = 50
LOOP_TURNS_BETWEEN_WRITES = 4  # pipecat's output: wait_for(queue.get()) and a push


class LateClock:
    """Reads 10 s later than when the track started on it: the track is behind, as under load."""

    def __init__(self) -> None:
        self.started: float | None = None

    def __call__(self) -> float:
        now = time.time()
        if self.started is None:
            self.started = now
            return now
        return now + 10.0


async def write_reply(track: SteadyAudioTrack) -> None:
    for n in range(CHUNKS):
        for _ in range(LOOP_TURNS_BETWEEN_WRITES if n else 0):
            await asyncio.sleep(0)  # fetching the next chunk
        await track.add_audio_bytes(CHUNK)


async def send(track: SteadyAudioTrack, frames: int) -> list[bool]:
    """``frames`` frames as aiortc takes them; whether each held audio."""
    sent: list[bool] = []
    while len(sent) < frames:
        sent += await send_packet(track)
    return sent


async def send_packet(track: SteadyAudioTrack) -> list[bool]:
    """One packet's two frames, then a loop turn to send it."""
    frames = [bool((await track.recv()).to_ndarray().any()) for _ in range(2)]
    await asyncio.sleep(0)
    return frames


async def send_reply(track: SteadyAudioTrack) -> list[bool]:
    """Frames as aiortc takes them while the writer writes the reply."""
    writer = asyncio.create_task(write_reply(track))
    sent: list[bool] = []
    while not writer.done():
        sent += await send_packet(track)
    await writer
    return sent


def holes(sent: list[bool]) -> int:
    """Silent frames between the first and the last frame of audio."""
    audio = [i for i, real in enumerate(sent) if real]
    return sum(not real for real in sent[audio[0] : audio[-1] + 1])


async def test_pipecats_track_behind_its_clock_chops_the_reply() -> None:
    """The cause, shown: one 10 ms of silence after (nearly) every 20 ms chunk."""
    track = SteadyAudioTrack(RATE, writer_grace_s=0, clock=LateClock())
    sent = await send_reply(track)
    assert sum(sent) == CHUNKS * 2  # all of the reply went out
    assert holes(sent) >= CHUNKS // 2  # but stretched by a third or more with silence


async def test_a_late_track_waits_for_the_writer_and_sends_the_reply_whole() -> None:
    track = SteadyAudioTrack(RATE, writer_grace_s=5.0, clock=LateClock())
    sent = await send_reply(track)
    assert sum(sent) == CHUNKS * 2
    assert holes(sent) == 0  # back to back, no silence between chunks
    assert track.holes_avoided == track.grace_waits == CHUNKS - 1  # once between each two


async def test_after_the_reply_a_late_track_waits_once_then_fills_silence() -> None:
    track = SteadyAudioTrack(RATE, writer_grace_s=0.2, clock=LateClock())
    track.add_audio_bytes(CHUNK)
    started = time.monotonic()
    sent = await send(track, 10)
    waited = time.monotonic() - started
    assert sent == [True, True] + [False] * 8
    assert (track.grace_waits, track.holes_avoided) == (1, 0)  # one wait, at the reply's end
    assert waited >= 0.2


class OnTimeClock:
    """Reads 1 ms before the track's next frame is due: never behind, whatever the load.

    (With the wall clock, a loaded machine that stalled the loop past a frame's time
    put the track behind, and the one wait it then made at the reply's end was right:
    fc20 saw it at load ~20.)
    """

    def __init__(self) -> None:
        self.track: SteadyAudioTrack | None = None

    def __call__(self) -> float:
        if self.track is None:
            return 0.0  # the track's start
        return self.track._timestamp / RATE - 0.001


async def test_on_time_the_track_keeps_its_clock() -> None:
    """Not behind: each frame waits for its time, as pipecat's, and never for the writer."""
    clock = OnTimeClock()
    track = SteadyAudioTrack(RATE, clock=clock)
    clock.track = track
    track.add_audio_bytes(CHUNK * 5)
    sent = await send(track, 20)
    assert sent == [True] * 10 + [False] * 10
    assert track.grace_waits == 0


async def test_on_the_wall_clock_the_track_sends_a_frame_every_10_ms() -> None:
    track = SteadyAudioTrack(RATE)
    track.add_audio_bytes(CHUNK * 5)
    started = time.monotonic()
    sent = await send(track, 20)
    assert sent == [True] * 10 + [False] * 10
    assert time.monotonic() - started >= 0.18  # 19 frames after the first, 10 ms each
