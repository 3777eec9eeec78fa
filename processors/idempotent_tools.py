"""Tool handlers that run once per logical call: the driver around :class:`ToolLedger`.

:class:`IdempotentTools` wraps the application's tool handlers as a graph
builder registers them on an LLM service (the realtime service or the
chained LLM). Each call asks the call's
:class:`~voxpipe.call.tool_ledger.ToolLedger` first: a new logical call runs
the handler; a repeat (the same call id, or a re-issued call with a new call
id, the same tool and arguments in the same caller turn) is answered with the
first run's result through ``result_callback``, so pipecat sends it back and
the response goes on, and a :class:`~voxpipe.call.events.ToolDeduplicated`
event goes to the timeline. A repeat that comes while the first run is still
going waits for its result.

Handlers get :class:`IdempotentCallParams`, pipecat's ``FunctionCallParams``
plus ``idempotency_key`` (the first run's call id) to hand to their own
backends. A run that raises or is cancelled (pipecat cancels a tool on a
barge-in) leaves no result: the next repeat runs the handler again, with the
same key, and the backend's own idempotency decides.

Only tools the builders register are wrapped (``tools`` and ``functions`` of
:func:`~voxpipe.pipelines.realtime.build_realtime_pipeline` and
:func:`~voxpipe.pipelines.chained.build_chained_pipeline`); an explicit
registration wins over pipecat's automatic one, so a direct function listed in
the context runs wrapped too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.adapters.llm.schemas.direct_function import DirectFunctionWrapper
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallParams

from voxpipe.call.events import CallEvent, ToolDeduplicated
from voxpipe.call.tool_ledger import RepeatedTool, ToolLedger
from voxpipe.frames import RealtimeCallEventFrame

Handler = Callable[[FunctionCallParams], Awaitable[None]]


@dataclasses.dataclass
class IdempotentCallParams(FunctionCallParams):
    """pipecat's ``FunctionCallParams`` plus the logical call's ``idempotency_key``.

    The key is the call id of the first run of this logical call; it stays the
    same when a cancelled run is run again for a re-issued call.
    """

    idempotency_key: str = ""


def caller_turns_in_context(params: FunctionCallParams) -> int:
    """The caller's turns so far: the user messages of the call's context (the chained path)."""
    return sum(
        1 for m in params.context.get_messages() if isinstance(m, dict) and m.get("role") == "user"
    )


class IdempotentTools:
    """Wraps tool handlers so a re-issued call never runs twice (the module docstring).

    Args:
        now_ms: the clock the ledger's entries age by.
        caller_turns: the caller's turns so far, for a call's ``params`` (the
            realtime service counts committed user turns; the default counts the
            context's user messages).
        ledger: the call's ledger (a new one by default).
    """

    def __init__(
        self,
        now_ms: Callable[[], float],
        *,
        caller_turns: Callable[[FunctionCallParams], int] = caller_turns_in_context,
        ledger: ToolLedger | None = None,
    ) -> None:
        self.ledger = ledger or ToolLedger()
        self.events: list[ToolDeduplicated] = []
        self._now_ms = now_ms
        self._caller_turns = caller_turns
        self._running: dict[str, asyncio.Future[Any]] = {}

    def register(self, llm: Any, tools: Any, functions: dict[str, Any] | None = None) -> None:
        """Register every handler of ``tools`` and ``functions`` on ``llm``, wrapped."""
        functions = functions or {}
        for name, handler in functions.items():
            llm.register_function(name, self.wrap(handler))
        for tool in tools or ():
            if isinstance(tool, FunctionSchema):
                handler = getattr(tool, "handler", None)
                if tool.name not in functions and handler is not None:
                    llm.register_function(tool.name, self.wrap(handler))
            elif callable(tool):
                direct = DirectFunctionWrapper(tool)
                if direct.name not in functions:
                    llm.register_function(direct.name, self.wrap_direct(tool))

    def wrap_direct(self, function: Callable[..., Awaitable[Any]]) -> Handler:
        """A direct function (``async def f(params, **arguments)``) as a wrapped handler."""
        direct = DirectFunctionWrapper(function)

        @functools.wraps(function)
        async def invoke(params: FunctionCallParams) -> None:
            await direct.invoke(args=params.arguments, params=params)

        return self.wrap(invoke)

    def wrap(self, handler: Handler) -> Handler:
        """``handler``, asking the ledger before it runs (its tool options are kept)."""

        @functools.wraps(handler)
        async def once(params: FunctionCallParams) -> None:
            await self._call(handler, params)

        return once

    async def _call(self, handler: Handler, params: FunctionCallParams) -> None:
        call_id = params.tool_call_id
        while True:
            decision = self.ledger.request(
                params.function_name,
                dict(params.arguments),
                call_id,
                self._caller_turns(params),
                int(self._now_ms()),
            )
            if not isinstance(decision, RepeatedTool):
                await self._run(handler, params, decision.idempotency_key)
                return
            first = self._running.get(decision.idempotency_key)
            if decision.finished or first is None:
                await self._answer(params, decision, decision.result, waited=False)
                return
            try:
                result = await asyncio.shield(first)
            except asyncio.CancelledError:
                if first.cancelled():
                    continue  # the first run was abandoned: this one runs (same key)
                raise
            await self._answer(params, decision, result, waited=True)
            return

    async def _run(self, handler: Handler, params: FunctionCallParams, key: str) -> None:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = done
        forward = params.result_callback

        async def result_callback(
            result: Any, *, properties: FunctionCallResultProperties | None = None
        ) -> None:
            if properties is None or properties.is_final:
                self.ledger.answered(key, result)
                if not done.done():
                    done.set_result(result)
            await forward(result, properties=properties)

        fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        fields.update(result_callback=result_callback, idempotency_key=key)
        try:
            await handler(IdempotentCallParams(**fields))
        finally:
            if not done.done():
                self.ledger.abandoned(key)
                done.cancel()
            self._running.pop(key, None)

    async def _answer(
        self, params: FunctionCallParams, repeat: RepeatedTool, result: Any, *, waited: bool
    ) -> None:
        event = ToolDeduplicated(
            params.function_name,
            params.tool_call_id,
            repeat.idempotency_key,
            repeat.reason,
            waited,
        )
        self.events.append(event)
        await _publish(params.llm, event, self._now_ms())
        await params.result_callback(result)


async def _publish(llm: Any, event: CallEvent, now_ms: float) -> None:
    """To the realtime service's call events, or as a frame the timeline records."""
    publish = getattr(llm, "publish_call_event", None)
    if publish is not None:
        await publish(event)
        return
    await llm.push_frame(RealtimeCallEventFrame(event=event, at_ms=now_ms))


__all__ = ["IdempotentCallParams", "IdempotentTools", "caller_turns_in_context"]
