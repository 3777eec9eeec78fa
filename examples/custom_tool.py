"""A custom tool: a pipecat direct function the chained graph's local LLM can call.

    python examples/custom_tool.py [OUT_DIR] [--input CALLER.wav]

A direct function is an ``async def`` whose first parameter is ``params``
(pipecat's ``FunctionCallParams``); its name, docstring and typed arguments
become the tool's schema. It answers through ``params.result_callback``, and
the LLM then speaks from the result. The same function works on the realtime
graph (``build_realtime_pipeline(..., tools=[get_weather])``). Each call is
also written to OUT_DIR/tool_calls.json.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from common import parse_args, save_call
from pipecat.services.llm_service import FunctionCallParams

from voxpipe import CallSession, FileTransport, build_chained_pipeline

CALLS: list[dict[str, str]] = []


async def get_weather(params: FunctionCallParams, city: str) -> None:
    """Get the current weather in a city.

    Args:
        city: The city name, for example London.
    """
    CALLS.append({"tool": "get_weather", "city": city})
    print(f"tool called: get_weather(city={city!r})")
    # Anything JSON-serialisable; the LLM reads it and answers the caller.
    await params.result_callback({"city": city, "conditions": "sunny", "temperature_c": 21})


async def main(caller: Path, out: Path) -> None:
    transport = FileTransport(caller, paced=True)
    graph = build_chained_pipeline(
        transport,
        instructions="You are a phone assistant. Use get_weather for the weather. "
        "Answer in one short sentence.",
        tools=[get_weather],
    )
    async with CallSession(graph) as call:
        await call.run_until_input_ends()
    (out / "tool_calls.json").write_text(json.dumps(CALLS, indent=2) + "\n")
    save_call(out, transport, graph)
    print(f"tool calls: {len(CALLS)}")


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.input, args.out))
