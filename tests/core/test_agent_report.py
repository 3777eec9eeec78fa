"""The report's ``agents`` section: each handoff between agents, read from the timeline."""

from __future__ import annotations

from voxpipe.call.events import (
    CallEvent,
    HandoffApplied,
    HandoffStarted,
    TransferRefused,
    timeline_entry,
)
from voxpipe.observability import CostLedger, RateLimitTracker
from voxpipe.observability.agent_report import agent_section
from voxpipe.processors.observability.report import build_report, render_html
from voxpipe.timeline import EventKind, Timeline


def _add(timeline: Timeline, t_ms: float, event: CallEvent) -> None:
    entry = timeline_entry(event)
    assert entry is not None
    kind, data = entry
    timeline.add(t_ms, kind, **data)


def _call_with_handoffs() -> Timeline:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="realtime")
    _add(timeline, 2100.4, HandoffStarted("triage", "billing", "a bill", "call_1", 2, 3, 180))
    _add(timeline, 2350, HandoffApplied("triage", "billing", 250, False, True))
    _add(timeline, 5000, TransferRefused("billing", "transfer_to_sales"))
    _add(timeline, 9000, HandoffStarted("billing", "triage", "done", "call_2", 1, 0, 0))
    timeline.add(9100, EventKind.CALL_ENDED)
    return timeline


def test_each_handoff_is_one_row_from_its_start_to_when_it_applied() -> None:
    section = agent_section(_call_with_handoffs())
    first, second = section["handoffs"]
    assert first == {
        "at_ms": 2100,
        "from": "triage",
        "to": "billing",
        "reason": "a bill",
        "kept_turns": 2,
        "dropped_items": 3,
        "summary_chars": 180,
        "applied_at_ms": 2350,
        "wait_ms": 250,
        "barged_in": False,
    }
    # The call ended before the second one's session.updated: never applied, and said so.
    assert (second["from"], second["to"], second["applied_at_ms"]) == ("billing", "triage", None)
    assert section["refused_transfers"] == [
        {"at_ms": 5000, "agent": "billing", "tool": "transfer_to_sales"}
    ]


def test_an_applied_handoff_whose_start_is_missing_is_still_listed() -> None:
    timeline = Timeline()
    _add(timeline, 100, HandoffApplied("a", "b", 40, True, False))
    (row,) = agent_section(timeline)["handoffs"]
    assert (row["from"], row["to"], row["reason"], row["barged_in"]) == ("a", "b", None, True)


def test_the_report_and_its_page_show_the_handoffs() -> None:
    report = build_report(_call_with_handoffs(), [], CostLedger(), RateLimitTracker(0.2))
    assert [h["to"] for h in report["agents"]["handoffs"]] == ["billing", "triage"]
    page = render_html(report, [])
    assert "<h2>Agent handoffs</h2>" in page
    assert "transfer_to_sales" in page and "a bill" in page


def test_a_call_with_one_agent_has_an_empty_section_and_no_html() -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="chained")
    report = build_report(timeline, [], CostLedger(), RateLimitTracker(0.2))
    assert report["agents"] == {"handoffs": [], "refused_transfers": []}
    assert "Agent handoffs" not in render_html(report, [])
