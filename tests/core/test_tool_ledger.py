"""The tool ledger: which tool calls run, which are repeats of one that ran (sans-I/O)."""

from __future__ import annotations

import pytest

from voxpipe.call.tool_ledger import (
    DedupReason,
    RepeatedTool,
    RunTool,
    ToolLedger,
    canonical_arguments,
)

ARGS = {"party": 4, "time": "19:00"}


def test_a_first_call_runs_under_its_own_call_id() -> None:
    ledger = ToolLedger()
    assert ledger.request("book_table", ARGS, "call_1", 1, 0) == RunTool("call_1")
    assert (ledger.runs, ledger.repeats) == (1, 0)


def test_the_same_call_id_again_is_a_repeat_with_the_first_result() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", {"booked": True})
    # Even with other arguments or in a later turn: the same item is the same call.
    repeat = ledger.request("book_table", {"party": 5}, "call_1", 2, 10)
    assert repeat == RepeatedTool("call_1", DedupReason.SAME_CALL_ID, True, {"booked": True})


def test_a_new_call_id_with_the_same_tool_and_arguments_in_the_same_turn_is_a_repeat() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", "ok")
    # Re-issued after a reconnect: JSON text, other key order and spacing.
    repeat = ledger.request("book_table", '{"time": "19:00",  "party": 4}', "call_2", 1, 500)
    assert repeat == RepeatedTool("call_1", DedupReason.SAME_CALL_IN_TURN, True, "ok")
    # The new id is now known too.
    assert ledger.request("book_table", ARGS, "call_2", 1, 600).idempotency_key == "call_1"
    assert (ledger.runs, ledger.repeats) == (1, 2)


@pytest.mark.parametrize(
    ("name", "arguments", "turn"),
    [
        ("book_table", ARGS, 2),  # the caller spoke again: a new request
        ("book_table", {"party": 2, "time": "19:00"}, 1),  # other arguments
        ("cancel_table", ARGS, 1),  # another tool
    ],
)
def test_anything_else_runs(name: str, arguments: dict[str, object], turn: int) -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", "ok")
    assert ledger.request(name, arguments, "call_2", turn, 100) == RunTool("call_2")


def test_a_repeat_while_the_first_runs_is_told_it_has_no_result_yet() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    waiting = ledger.request("book_table", ARGS, "call_2", 1, 100)
    assert waiting == RepeatedTool("call_1", DedupReason.SAME_CALL_IN_TURN, False, None)
    ledger.answered("call_2", "ok")  # whichever id reports, the logical call has its result
    assert ledger.result_of("call_1") == RepeatedTool(
        "call_1", DedupReason.SAME_CALL_ID, True, "ok"
    )


def test_an_abandoned_run_runs_again_under_the_same_key() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.abandoned("call_1")  # cancelled by a barge-in, no result
    assert ledger.request("book_table", ARGS, "call_2", 1, 100) == RunTool("call_1")
    # Running again: a further repeat waits for it, then gets its result.
    waiting = ledger.request("book_table", ARGS, "call_3", 1, 200)
    assert waiting == RepeatedTool("call_1", DedupReason.SAME_CALL_IN_TURN, False, None)
    ledger.answered("call_1", "ok")
    assert ledger.request("book_table", ARGS, "call_4", 1, 300).result == "ok"  # type: ignore[union-attr]
    assert (ledger.runs, ledger.repeats) == (2, 2)


def test_a_finished_run_is_not_abandoned_afterwards() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", "ok")
    ledger.abandoned("call_1")
    assert isinstance(ledger.request("book_table", ARGS, "call_2", 1, 100), RepeatedTool)


def test_only_the_first_result_counts() -> None:
    ledger = ToolLedger()
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", "first")
    ledger.answered("call_1", "second")
    assert ledger.request("book_table", ARGS, "call_2", 1, 10).result == "first"  # type: ignore[union-attr]


def test_entries_expire_after_keep_ms() -> None:
    ledger = ToolLedger(keep_ms=1_000)
    ledger.request("book_table", ARGS, "call_1", 1, 0)
    ledger.answered("call_1", "ok")
    assert isinstance(ledger.request("book_table", ARGS, "call_2", 1, 1_000), RepeatedTool)
    assert ledger.request("book_table", ARGS, "call_3", 1, 1_001) == RunTool("call_3")
    assert ledger.result_of("call_2") is None  # the expired entry's ids went with it


def test_the_ledger_keeps_at_most_remembered_entries_oldest_out() -> None:
    ledger = ToolLedger(remembered=2)
    for i in range(3):
        ledger.request("add_item", {"item": i}, f"call_{i}", 1, i)
        ledger.answered(f"call_{i}", i)
    assert len(ledger) == 2
    assert ledger.request("add_item", {"item": 0}, "call_x", 1, 10) == RunTool("call_x")
    assert isinstance(ledger.request("add_item", {"item": 2}, "call_y", 1, 10), RepeatedTool)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        ToolLedger(keep_ms=0)


def test_canonical_arguments() -> None:
    assert canonical_arguments('{"b": 1, "a": [1, 2]}') == canonical_arguments(
        {"a": [1, 2], "b": 1}
    )
    assert canonical_arguments("") == "{}"
    assert canonical_arguments("not json") == "not json"  # compared as given
