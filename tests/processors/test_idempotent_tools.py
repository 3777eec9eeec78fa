"""The idempotent tool wrapper: how repeats reach (or never reach) the application's handler.

The handlers get pipecat's own ``FunctionCallParams``, built as pipecat's
function runner builds them; the LLM is a recorder of the events published.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams

from voxpipe.call.events import CallEvent, ToolDeduplicated
from voxpipe.call.tool_ledger import DedupReason
from voxpipe.processors.idempotent_tools import IdempotentCallParams, IdempotentTools

ARGS = {"party": 4}


class Published:
    """Stands where the realtime service is: takes the published call events."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def publish_call_event(self, event: CallEvent) -> None:
        self.events.append(event)


def params(
    call_id: str, results: list[tuple[str, Any]], llm: Any, messages: list[Any] | None = None
) -> FunctionCallParams:
    async def result_callback(
        result: Any, *, properties: FunctionCallResultProperties | None = None
    ) -> None:
        results.append((call_id, result))

    return FunctionCallParams(
        function_name="book_table",
        tool_call_id=call_id,
        arguments=ARGS,
        llm=llm,
        pipeline_worker=None,  # type: ignore[arg-type]
        context=LLMContext(messages=messages or [{"role": "user", "content": "a table for 4"}]),
        result_callback=result_callback,
    )


async def test_a_repeat_during_the_first_run_waits_for_its_result_and_never_runs() -> None:
    llm, results, keys = Published(), [], []
    release = asyncio.Event()

    async def book_table(p: FunctionCallParams) -> None:
        assert isinstance(p, IdempotentCallParams)
        keys.append(p.idempotency_key)
        await release.wait()
        await p.result_callback({"booked": True})

    tools = IdempotentTools(lambda: 0.0)
    handler = tools.wrap(book_table)
    first = asyncio.create_task(handler(params("call_1", results, llm)))
    repeat = asyncio.create_task(handler(params("call_2", results, llm)))
    await asyncio.sleep(0.05)
    assert results == [] and keys == ["call_1"]  # the repeat waits
    release.set()
    await asyncio.gather(first, repeat)
    assert keys == ["call_1"]
    assert results == [("call_1", {"booked": True}), ("call_2", {"booked": True})]
    assert llm.events == [
        ToolDeduplicated("book_table", "call_2", "call_1", DedupReason.SAME_CALL_IN_TURN, True)
    ]


async def test_a_cancelled_first_run_lets_the_repeat_run_with_the_same_key() -> None:
    llm, results, keys = Published(), [], []

    async def book_table(p: FunctionCallParams) -> None:
        assert isinstance(p, IdempotentCallParams)
        keys.append(p.idempotency_key)
        if len(keys) == 1:
            await asyncio.sleep(60)  # cut by a barge-in before it answers
        await p.result_callback("ok")

    handler = IdempotentTools(lambda: 0.0).wrap(book_table)
    first = asyncio.create_task(handler(params("call_1", results, llm)))
    await asyncio.sleep(0.05)
    repeat = asyncio.create_task(handler(params("call_2", results, llm)))
    await asyncio.sleep(0.05)
    first.cancel()
    await repeat
    with pytest.raises(asyncio.CancelledError):
        await first
    # It ran again (nothing says the first booking happened), under the first key,
    # so the application's backend can tell it is the same booking.
    assert keys == ["call_1", "call_1"]
    assert results == [("call_2", "ok")]
    assert llm.events == []


async def test_a_new_caller_turn_runs_the_tool_again() -> None:
    llm, results, runs = Published(), [], []

    async def book_table(p: FunctionCallParams) -> None:
        runs.append(p.tool_call_id)
        await p.result_callback("ok")

    handler = IdempotentTools(lambda: 0.0).wrap(book_table)
    await handler(params("call_1", results, llm))
    await handler(params("call_2", results, llm))  # re-issued in the same turn
    later = [{"role": "user", "content": "a table for 4"}, {"role": "user", "content": "again"}]
    await handler(params("call_3", results, llm, later))  # the caller asked again
    assert runs == ["call_1", "call_3"]
    assert [r for _, r in results] == ["ok", "ok", "ok"]


async def test_direct_functions_are_wrapped_and_get_their_arguments() -> None:
    llm, results, seen = Published(), [], []

    async def book_table(params: FunctionCallParams, party: int) -> None:
        """Book a table."""
        seen.append((party, getattr(params, "idempotency_key", None)))
        await params.result_callback({"party": party})

    handler = IdempotentTools(lambda: 0.0).wrap_direct(book_table)
    await handler(params("call_1", results, llm))
    await handler(params("call_1", results, llm))  # the same item again
    assert seen == [(4, "call_1")]
    assert results == [("call_1", {"party": 4}), ("call_1", {"party": 4})]
    assert [e.reason for e in llm.events if isinstance(e, ToolDeduplicated)] == [
        DedupReason.SAME_CALL_ID
    ]
