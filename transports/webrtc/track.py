"""The call's outgoing audio track: pipecat's, without holes in a reply when it runs late.

pipecat's ``RawAudioTrack`` sends a 10 ms frame each time aiortc asks, paced
by its own clock, and fills silence when nothing is queued. pipecat's output
writes its next chunk only once the track took the last one. On time, the
track sleeps until its next frame is due and the writer has long queued the
next chunk; behind its clock (a loaded loop: measured 0.3-1 s behind during
a reply at load 6), it sends back to back, finds the queue empty before the
writer's task has run again, and fills 10 ms of silence after every 20 ms
chunk. The caller heard the reply chopped, and the stream ran on 1.5x as
long as the reply (in ``tests/transports/test_webrtc_far_end.py`` a 1.6 s
sentence took 2.4 s of stream and ate the gap the test waits for).

:class:`SteadyAudioTrack` waits, only when it is behind and only right after
real audio, up to ``writer_grace_s`` for the next chunk before it fills
silence. On time it behaves as pipecat's; at the end of a reply sent late it
adds at most that grace once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from av import AudioFrame
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import RawAudioTrack, SmallWebRTCClient

WRITER_GRACE_S = 0.03  # the writer's next chunk is a few loop turns away; the track is late anyway


class SteadyAudioTrack(RawAudioTrack):
    """pipecat's outgoing track that, behind its clock, gives the writer a moment before silence.

    Args:
        sample_rate: the track's rate (pipecat's output rate).
        auto_silence: fill silence when nothing is queued (pipecat's default), else wait.
        writer_grace_s: how long a late track waits after real audio for the next chunk
            (0: never, as pipecat's track).
        clock: seconds, the clock the track paces itself by (pipecat's: ``time.time``).
    """

    def __init__(
        self,
        sample_rate: int,
        auto_silence: bool = True,
        *,
        writer_grace_s: float = WRITER_GRACE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sample_rate, auto_silence)
        self._clock = clock
        self._start = clock()
        self._writer_grace_s = writer_grace_s
        self._queued = asyncio.Event()
        self._after_audio = False  # the last frame sent was queued audio
        self.grace_waits = 0  # times a late track waited for the writer
        self.holes_avoided = 0  # of those, times the next chunk came within the grace

    def add_audio_bytes(self, audio_bytes: bytes) -> asyncio.Future[Any]:
        """Queue ``audio_bytes`` (whole 10 ms frames); the future resolves once all were sent."""
        future: asyncio.Future[Any] = super().add_audio_bytes(audio_bytes)
        self._queued.set()
        return future

    async def recv(self) -> AudioFrame:
        """The next 10 ms frame: queued audio, or silence when none is queued in time."""
        late_s = self._clock() - (self._start + self._timestamp / self._sample_rate)
        if self._timestamp > 0 and late_s < 0:
            await asyncio.sleep(-late_s)
        elif self._after_audio and not self._chunk_queue and self._writer_grace_s > 0:
            await self._wait_for_writer()
        while not self._chunk_queue and not self._auto_silence:
            self._queued.clear()
            await self._queued.wait()
        if self._chunk_queue:
            chunk, future = self._chunk_queue.popleft()
            if future is not None and not future.done():
                future.set_result(True)
            self._after_audio = True
        else:
            chunk = bytes(self._bytes_per_10ms)
            self._after_audio = False
        samples = np.frombuffer(chunk, dtype=np.int16)
        frame = AudioFrame.from_ndarray(samples[None, :], layout="mono")
        frame.sample_rate = self._sample_rate
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, self._sample_rate)
        self._timestamp += self._samples_per_10ms
        return frame

    async def _wait_for_writer(self) -> None:
        self.grace_waits += 1
        self._queued.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queued.wait(), self._writer_grace_s)
            self.holes_avoided += 1


def use_steady_track(client: SmallWebRTCClient) -> None:
    """Make ``client`` send through a :class:`SteadyAudioTrack` on every connection it adopts.

    pipecat builds its ``RawAudioTrack`` in the client's connected handler,
    with no way to choose the class; this replaces that handler on the
    instance (the connection's handlers look it up at call time, rejoins too).
    """

    async def connected() -> None:
        if not client._params or client._params.video_out_enabled:
            await SmallWebRTCClient._handle_client_connected(client)  # pipecat's own
            return
        connection: SmallWebRTCConnection = client._webrtc_connection
        client._audio_input_track = connection.audio_input_track()
        client._video_input_track = connection.video_input_track()
        client._screen_video_track = connection.screen_video_input_track()
        if client._params.audio_out_enabled:
            client._audio_output_track = SteadyAudioTrack(
                client._out_sample_rate, client._params.audio_out_auto_silence
            )
            connection.replace_audio_track(client._audio_output_track)
        await client._callbacks.on_client_connected(connection)

    client._handle_client_connected = connected  # type: ignore[method-assign]
