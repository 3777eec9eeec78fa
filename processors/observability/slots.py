"""Counts the chained slots' handoffs and give-ups in Prometheus.

Each fallback service pushes a ``SlotFallbackFrame`` per event; this observer
hands them to :meth:`~voxpipe.observability.metrics.VoxpipeMetrics.record_slot_event`.
"""

from __future__ import annotations

from typing import ClassVar

from pipecat.frames.frames import Frame
from pipecat.observers.base_observer import FramePushed

from voxpipe.frames import SlotFallbackFrame
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.inline import InlineObserver


class SlotFallbackMetrics(InlineObserver):
    """``voxpipe_slot_handoffs_total`` and ``voxpipe_slot_failures_total``."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (SlotFallbackFrame,)

    def __init__(self, metrics: VoxpipeMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def observe(self, data: FramePushed, first: bool) -> None:
        if isinstance(data.frame, SlotFallbackFrame):
            self.metrics.record_slot_event(data.frame.event)
