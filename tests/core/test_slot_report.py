"""The report's ``slots`` section: what the chained slots' fallback did, read from the timeline."""

from __future__ import annotations

from voxpipe.observability.slot_report import slot_section
from voxpipe.slot_fallback import FallbackPolicy, HandoffReason, Slot, SlotFallback, timeline_data
from voxpipe.timeline import EventKind, Timeline


def test_handoffs_and_failures_are_listed_and_counted_per_slot() -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="chained")
    tts = SlotFallback(Slot.TTS, ("piper", "espeak"), FallbackPolicy(2000))
    request = tts.begin(now_ms=0)
    timeline.add(
        1500.4,
        EventKind.SLOT_HANDOFF,
        **timeline_data(request.failed(2000, HandoffReason.DEADLINE, "nothing within 2000 ms")),
    )
    timeline.add(
        4000, EventKind.SLOT_FAILED, **timeline_data(request.failed(4000, HandoffReason.ERROR, "x"))
    )

    section = slot_section(timeline)
    assert section["handoffs"] == [
        {
            "at_ms": 1500,
            "slot": "tts",
            "from": "piper",
            "to": "espeak",
            "reason": "deadline",
            "detail": "nothing within 2000 ms",
            "after_partial": False,
        }
    ]
    (failure,) = section["failures"]
    assert failure["engines"] == ["piper", "espeak"] and failure["at_ms"] == 4000
    assert "every tts engine failed on this request" in failure["error"]
    assert section["per_slot"] == {"tts": {"handoffs": 1, "failures": 1}}


def test_a_call_without_fallback_has_an_empty_section() -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="chained")
    assert slot_section(timeline) == {"handoffs": [], "failures": [], "per_slot": {}}
