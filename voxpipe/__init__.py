"""voxpipe: production real-time voice agents on pipecat.

The public API is imported lazily so that light commands (``voxpipe cost``)
never load pipecat or a model::

    from voxpipe import build_chained_pipeline, FileTransport, CallSession
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build_chained_pipeline": "voxpipe.pipelines.chained",
    "TurnSettings": "voxpipe.pipelines.chained",
    "VoiceGraph": "voxpipe.pipelines.graph",
    "CallSession": "voxpipe.pipelines.session",
    "FileTransport": "voxpipe.transports.file",
    "PlaybackClock": "voxpipe.playback",
    "PlaybackMarkerFrame": "voxpipe.frames",
    "VoxpipeError": "voxpipe.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voxpipe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
