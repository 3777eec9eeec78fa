"""voxpipe: production real-time voice agents on pipecat.

The public API is imported lazily so that light commands (``voxpipe cost``)
never load pipecat or a model::

    from voxpipe import build_chained_pipeline, FileTransport, CallSession

Importing voxpipe replaces loguru's untouched default handler (everything from
DEBUG, pipecat's included) with one that shows voxpipe from INFO and pipecat
from WARNING; see :mod:`voxpipe.logs`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from voxpipe.logs import quiet_default_handler

# pyproject maps pipelines/, processors/ and transports/ (beside this folder)
# into voxpipe.*; installed, they sit inside it. Run from a source checkout
# (``python -m voxpipe`` at its root) they are found beside it too.
__path__.append(str(Path(__file__).resolve().parent.parent))

__version__ = "0.1.0"

_ERRORS = (
    "Side",
    "VoxpipeError",
    "ConfigError",
    "ModelMissingError",
    "AudioFormatError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "TransportError",
    "SessionError",
    "FatalProviderError",
    "IllegalTransitionError",
    "RetryBudgetExhaustedError",
    "TokenRotationError",
    "SlotFailedError",
    "OfferRejected",
    "CallTokenRejected",
    "WebhookRejected",
    "DailyJoinFailed",
    "DailyApiError",
    "ScenarioError",
    "DelegationConfigError",
    "AgentsConfigError",
)

_EXPORTS = {
    # The two graph builders and what they return.
    "build_chained_pipeline": "voxpipe.pipelines.chained",
    "build_realtime_pipeline": "voxpipe.pipelines.realtime",
    "TurnSettings": "voxpipe.pipelines.chained",
    "VoiceGraph": "voxpipe.pipelines.graph",
    # Running a call, and what it runs on.
    "CallSession": "voxpipe.pipelines.session",
    "FileTransport": "voxpipe.transports.file",
    # The embedded Realtime-protocol server, started in process.
    "running_realtime_server": "voxpipe.transports.realtime_server",
    "ServerConfig": "voxpipe.transports.realtime_server",
    # The agent in a Daily room (``voxpipe daily``).
    "DailyCall": "voxpipe.transports.daily.call",
    "RoomOptions": "voxpipe.transports.daily.call",
    "DailyCallTransport": "voxpipe.transports.daily.transport",
    "GuardrailTap": "voxpipe.processors.guardrails.tap",
    "PlaybackMarkerFrame": "voxpipe.frames",
    "configure_logging": "voxpipe.logs",
    **dict.fromkeys(_ERRORS, "voxpipe.errors"),
}

__all__ = ["__version__", *_EXPORTS]

quiet_default_handler()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voxpipe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
