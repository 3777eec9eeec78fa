"""Silero VAD scoring, batched across every session of the process.

The model is pipecat's bundled ``silero_vad.onnx``. One ONNX call per frame
is mostly overhead (about 0.2-0.45 ms for 32 ms of audio here); stacking the
frames of all live sessions into one batch costs about 0.1 ms a frame. Each
session keeps its own recurrent state and 64-sample context, gathered into
the batch and scattered back after it. A session's frames are scored strictly
in order (a round takes at most one frame per session) and its jobs complete
in the order they were submitted, each with one callback, so the driver needs
no extra task or queue per session.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from loguru import logger

from voxpipe.realtime_server.turn_detection import VAD_RATE, VadFrame

CONTEXT_SAMPLES = 64
Scored = list[tuple[VadFrame, float]]


@functools.cache
def _onnx_session() -> Any:
    import onnxruntime

    path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], sess_options=options
    )


@dataclass(eq=False)  # identity: the batcher finds jobs in lists, and arrays have no ==
class VadStream:
    """One session's recurrent Silero state."""

    state: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, 128), np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, np.float32))
    closed: bool = False


@dataclass(eq=False)
class _Job:
    stream: VadStream
    frames: tuple[VadFrame, ...]
    done: Callable[[Scored], None]
    scores: list[float] = field(default_factory=list)

    @property
    def next_samples(self) -> np.ndarray:
        return self.frames[len(self.scores)].samples


class SileroBatcher:
    """Scores 512-sample frames at 16 kHz from many streams, one batch per round."""

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._jobs: list[_Job] = []
        self._scheduled = False

    def submit(
        self, stream: VadStream, frames: tuple[VadFrame, ...], done: Callable[[Scored], None]
    ) -> None:
        """Score ``frames`` of ``stream``; ``done`` gets them with their probabilities."""
        if not frames:
            return
        self._jobs.append(_Job(stream, frames, done))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run_round)

    async def score(self, stream: VadStream, frames: tuple[VadFrame, ...]) -> list[float]:
        """Awaitable form of :meth:`submit`: the probabilities, in order."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self.submit(stream, frames, future.set_result)
        return [probability for _, probability in await future] if frames else []

    def _take_round(self) -> list[_Job]:
        batch: list[_Job] = []
        taken: set[int] = set()
        for job in self._jobs:
            if id(job.stream) in taken or job.stream.closed:
                continue
            taken.add(id(job.stream))  # later jobs of this stream wait for this one
            batch.append(job)
            if len(batch) >= self.max_batch:
                break
        return batch

    def _run_round(self) -> None:
        self._jobs = [job for job in self._jobs if not job.stream.closed]
        batch = self._take_round()
        if batch:
            self._infer(batch)
            for job in batch:
                if len(job.scores) == len(job.frames):
                    self._jobs.remove(job)
                    self._finish(job)
        if self._jobs:
            asyncio.get_running_loop().call_soon(self._run_round)
        else:
            self._scheduled = False

    @staticmethod
    def _finish(job: _Job) -> None:
        try:
            job.done(list(zip(job.frames, job.scores, strict=True)))
        except Exception:  # one session's bug must not stop the others' VAD
            logger.exception("VAD callback failed")

    @staticmethod
    def _infer(batch: list[_Job]) -> None:
        inputs = np.stack([np.concatenate((j.stream.context, j.next_samples)) for j in batch])
        state = np.concatenate([j.stream.state for j in batch], axis=1)
        out, new_state = _onnx_session().run(
            None, {"input": inputs, "state": state, "sr": np.array(VAD_RATE, dtype=np.int64)}
        )
        for index, job in enumerate(batch):
            job.stream.state = new_state[:, index : index + 1, :]
            job.stream.context = inputs[index, -CONTEXT_SAMPLES:]
            job.scores.append(float(out[index][0]))
