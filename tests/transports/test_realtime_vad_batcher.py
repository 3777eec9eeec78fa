"""The Silero batcher serves several sessions at once (one session's job ending first)."""

from __future__ import annotations

import asyncio

import numpy as np

from voxpipe.realtime_server.turn_detection import VadFrame
from voxpipe.transports.realtime_server.vad import SileroBatcher, VadStream


def frames(count: int) -> tuple[VadFrame, ...]:
    silence = np.zeros(512, dtype=np.float32)
    return tuple(VadFrame(i * 32, (i + 1) * 32, silence) for i in range(count))


async def test_streams_of_different_lengths_are_scored_side_by_side() -> None:
    batcher = SileroBatcher()
    long_job, short_job = VadStream(), VadStream()
    # The short stream's job finishes in the first round while the long one's is
    # still listed before it: removing it must not compare the two.
    async with asyncio.timeout(10):  # before the fix a round raised and nobody was answered
        scores = await asyncio.gather(
            batcher.score(long_job, frames(3)), batcher.score(short_job, frames(1))
        )
    assert [len(s) for s in scores] == [3, 1]
    assert all(0.0 <= p < 0.5 for s in scores for p in s)  # silence is not speech
