"""voxpipe: production real-time voice agents on pipecat.

The public API is imported lazily so that light commands (``voxpipe cost``)
never load pipecat or a model::

    from voxpipe import build_chained_pipeline, FileTransport, CallSession
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# pyproject maps pipelines/, processors/ and transports/ (beside this folder)
# into voxpipe.*; installed, they sit inside it. Run from a source checkout
# (``python -m voxpipe`` at its root) they are found beside it too.
__path__.append(str(Path(__file__).resolve().parent.parent))

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
