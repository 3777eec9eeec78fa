"""A side-effecting tool re-issued after a reconnect runs once (issue 17), end to end.

A caller (real speech) asks for a table; voxpipe's server (scripted brain)
calls ``book_table``; while the handler runs, the server drops the session
(an error then a 1011 close, its fault injection). The call reconnects, the
tool's result asks for a response on the new session, and the model (the
script, as a real model reading the same unanswered caller turn) calls
``book_table`` again with a new call id. The handler must have run once; the
repeat is answered with the first result and the new agent... the bot speaks
the confirmation on the new session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realtime_calls import compose, realtime_call

from voxpipe.call.events import CallEvent, Reconnected, ToolDeduplicated, timeline_entry
from voxpipe.call.state import CallState, StateChanged
from voxpipe.call.tool_ledger import DedupReason
from voxpipe.processors.idempotent_tools import IdempotentCallParams
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import SendError

BOOKING = {"party": 4, "time": "19:00"}
CONFIRM = "Your table for four at seven is booked. See you tonight."
SCRIPT: list[Any] = [{"function_call": {"name": "book_table", "arguments": BOOKING}}, CONFIRM]


def spoke(events: list[CallEvent]) -> list[str]:
    """The sessions the bot spoke in."""
    return [
        str(e.session_id)
        for e in events
        if isinstance(e, StateChanged) and e.current is CallState.SPEAKING
    ]


async def test_a_tool_re_issued_after_a_reconnect_runs_once(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [300, "Please book a table for four at seven tonight.", 15_000], recording)
    runs: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}

    async def book_table(params: IdempotentCallParams, party: int, time: str) -> None:
        """Book a table (a side effect: it must happen once)."""
        runs.append({"call_id": params.tool_call_id, "key": params.idempotency_key})
        call = holder["call"]
        if len(runs) == 1:
            # The session drops while the booking is in flight; the result comes after.
            call.server.arm(SendError(close_code=1011))
            await call.wait_event(Reconnected, timeout_s=60)
        await params.result_callback({"booked": True, "party": party, "time": time})

    async with realtime_call(recording, script=SCRIPT, tools=[book_table]) as call:
        holder["call"] = call
        asked: list[str] = []  # every call id the model asked book_table with

        @call.service.event_handler("on_function_calls_started")
        async def _on_calls(_s: Any, calls: list[Any]) -> None:
            asked.extend(c.tool_call_id for c in calls)

        await call.wait_for(lambda: len(asked) >= 2, 120)
        # The repeat is answered and the bot speaks the confirmation on the new session
        # (the first session never spoke: its one response was the tool call).
        await call.wait_for(lambda: bool(spoke(call.events)), 60)

    assert len(set(asked)) == 2, asked  # the re-issued call came with a new call id
    assert len(runs) == 1, f"book_table ran {len(runs)} times: {runs}"
    first = runs[0]
    [deduped] = call.of(ToolDeduplicated)
    assert first["key"] == first["call_id"]  # the first run's call id is the key
    assert deduped.tool == "book_table"
    assert deduped.idempotency_key == first["call_id"]
    assert deduped.call_id == asked[1] != first["call_id"]
    assert deduped.reason is DedupReason.SAME_CALL_IN_TURN
    assert len(call.of(Reconnected)) == 1
    sessions = {e.session_id for e in call.of(StateChanged) if e.session_id is not None}
    assert len(sessions) == 2 and len(set(spoke(call.events))) == 1
    entry = timeline_entry(deduped)
    assert entry is not None and entry[0] is EventKind.TOOL_DEDUPLICATED
    assert entry[1]["idempotency_key"] == first["call_id"]
