"""Pipeline-side instruments: per-turn latency boundaries, cost and rate limits.

The observers here are thin drivers of the sans-I/O cores in
:mod:`voxpipe.observability`, and run inline, inside the pushes of an
:class:`ObservedPipeline` (see :mod:`~voxpipe.processors.observability.inline`);
the per-call report is written by :func:`voxpipe.processors.observability.report.write_report`.
"""

from voxpipe.processors.observability.events import CallEventMetrics
from voxpipe.processors.observability.inline import (
    InlineObserver,
    ObservedPipeline,
    ObserverGroup,
)
from voxpipe.processors.observability.instruments import Instruments, instrument
from voxpipe.processors.observability.latency import LatencyObserver
from voxpipe.processors.observability.sources import (
    BrainKind,
    CaptureStamps,
    PlaybackReports,
    SendReports,
    brain_kind,
)
from voxpipe.processors.observability.usage import (
    UsageObserver,
    cost_dict,
    usage_from_tokens,
)

__all__ = [
    "BrainKind",
    "CallEventMetrics",
    "CaptureStamps",
    "InlineObserver",
    "Instruments",
    "LatencyObserver",
    "ObservedPipeline",
    "ObserverGroup",
    "PlaybackReports",
    "SendReports",
    "UsageObserver",
    "brain_kind",
    "cost_dict",
    "instrument",
    "usage_from_tokens",
]
