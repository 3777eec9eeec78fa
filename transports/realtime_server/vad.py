"""Silero VAD scoring with pipecat's bundled model and ONNX wrapper.

One ONNX inference session is shared by the whole process; each connection
gets its own recurrent state (a shallow copy of the wrapper).
"""

from __future__ import annotations

import copy
import functools
from importlib import resources

from voxpipe.realtime.turn import VAD_RATE, VadFrame


@functools.cache
def _shared_model() -> object:
    from pipecat.audio.vad.silero import SileroOnnxModel

    path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
    return SileroOnnxModel(str(path), force_onnx_cpu=True)  # type: ignore[no-untyped-call]


class SileroScorer:
    """Speech probability of 32 ms frames for one connection."""

    def __init__(self) -> None:
        self._model = copy.copy(_shared_model())
        self._model.reset_states()  # type: ignore[attr-defined]

    def score(self, frames: tuple[VadFrame, ...]) -> list[tuple[VadFrame, float]]:
        """Each frame with its speech probability."""
        return [(frame, float(self._model(frame.samples, VAD_RATE)[0][0])) for frame in frames]  # type: ignore[operator]
