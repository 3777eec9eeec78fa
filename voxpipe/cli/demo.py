"""``voxpipe demo``: a whole simulated call, offline, printed turn by turn."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run a whole call offline and print its turns")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output directory")
    parser.add_argument("--mode", choices=["chained", "realtime"], default="chained")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from voxpipe.pipelines import demo_agent
    from voxpipe.pipelines.simulated_call import CallSpec, Mode, simulate_call

    console = Console()
    console.print(
        f"[bold]voxpipe demo[/bold]: a caller rings the pharmacy ({args.mode} path, offline)"
    )
    spec = CallSpec(
        input_path=demo_agent.caller_recording(),
        out_dir=args.out,
        mode=Mode(args.mode),
        instructions=demo_agent.INSTRUCTIONS,
        tools=demo_agent.TOOLS,
    )
    result = asyncio.run(simulate_call(spec))
    table = Table(title="The call, turn by turn")
    for column in ("#", "caller said (heard)", "bot replied", "latency"):
        table.add_column(column)
    for i, turn in enumerate(result.turns, 1):
        latency = "-" if turn.latency_ms is None else f"{turn.latency_ms:.0f} ms"
        replied = turn.replied + (" [interrupted]" if turn.interrupted else "")
        table.add_row(str(i), turn.heard, replied, latency)
    console.print(table)
    tools = [
        e.data.get("name") for e in result.timeline.events if e.kind.value == "tool_call_started"
    ]
    console.print(f"tool calls: {', '.join(map(str, tools)) or 'none'}")
    console.print("latency: from the end of the caller's turn to the first bot audio out")
    console.print(
        f"wrote {args.out / 'call.wav'} (caller left, bot right), transcript.json, timeline.jsonl"
    )
    return 0 if result.turns else 1
