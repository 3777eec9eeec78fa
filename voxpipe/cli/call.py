"""``voxpipe call``: a live call simulated from a recording, on the realtime or chained path.

The recording plays in real time through the file transport. Realtime mode
talks to ``--server`` (a Realtime endpoint), to OpenAI when a key is set, or
else to an in-process ``voxpipe realtime-server`` whose brain is the local
engines (``--brain local``) or a script (``--brain scripted``). Writes
``DIR/call.wav`` (caller left, bot right), ``DIR/transcript.json``,
``DIR/timeline.jsonl`` and the call report, ``DIR/report.json`` and
``DIR/report.html`` (per-turn latency waterfalls, cost, rate limits).
``--metrics-port`` serves Prometheus ``/metrics`` while the call runs.
``--fallback chained`` (or ``[fallback]`` in ``--config``): when the realtime
brain fails (retry budget spent, a fatal error, no reply audio within the
first-audio deadline) the call goes on through the chained brain.
``[delegate]`` in ``--config`` (chained mode): the voice model hands hard turns
to a backend model and says a filler while a long wait lasts.
``start`` + ``[agents.<name>]`` in ``--config`` (either mode): the start agent
takes the call and hands it on through its ``transfer_to_<name>`` tools. An
agent that lists ``tools`` is refused before the call (the command line has no
handlers; tools with handlers need the Python API), as is ``[agents]`` beside
a fallback brain or ``[delegate]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from voxpipe.cli import summary
from voxpipe.cli.agents import agents_config
from voxpipe.cli.delegate import delegate_settings
from voxpipe.cli.fallback import add_fallback_option, fallback_config


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "call",
        help=summary("call"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", type=Path, required=True, help="the caller's recording")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--mode", choices=["realtime", "chained"], default="realtime")
    parser.add_argument("--server", default=None, help="Realtime endpoint (ws://.../v1/realtime)")
    parser.add_argument("--api-key", default=None, help="key (default: OPENAI_API_KEY)")
    parser.add_argument("--config", type=Path, default=None, help="agent.toml")
    parser.add_argument(
        "--brain",
        choices=["local", "scripted"],
        default="local",
        help="brain of the in-process server (no --server and no key)",
    )
    parser.add_argument("--script", type=Path, default=None, help="script for --brain scripted")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port while the call runs (0: any free port)",
    )
    add_fallback_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voxpipe.guardrails.config import load_agent_file
    from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
    from voxpipe.pipelines.simulated_call import CallSpec, Mode

    instructions, tap, slots = DEFAULT_INSTRUCTIONS, None, None
    if args.config is not None:
        instructions, tap, slots = _agent(args.config)
    agent = load_agent_file(args.config) if args.config is not None else None
    fallback = fallback_config(args.fallback, agent)
    delegate = delegate_settings(agent, args.mode, fallback)  # before anything starts
    agents = agents_config(agent, args.mode, fallback)  # so are [agents] it cannot run
    spec = CallSpec(
        input_path=args.input,
        out_dir=args.out,
        mode=Mode(args.mode),
        instructions=instructions,
        server_url=args.server,
        api_key=args.api_key,
        tap=tap,
        slots=slots,
        fallback=fallback,
        delegate=delegate,
        agents=agents,
    )
    result = asyncio.run(_run(spec, args.brain, args.script, args.metrics_port))
    print_call(result, args.out)
    failure = call_failure(result)
    if failure is not None:
        print(f"voxpipe call: the call failed: {failure}", file=sys.stderr)
        return 1
    return 0 if result.turns else 1


def call_failure(result: Any) -> str | None:
    """Why the call did not end with its brain there, if it did not (from its timeline).

    A fatal error's text, or that the call ended before the brain connected or
    while it was reconnecting (the report's ``outcome`` says the same).
    """
    from voxpipe.observability.outcome import call_outcome

    return call_outcome(result.timeline).reason


def _agent(path: Path) -> tuple[str, Any, Any]:
    from voxpipe.guardrails.config import load_agent_file
    from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
    from voxpipe.processors.guardrails.input import build_guardrails

    agent = load_agent_file(path)
    # The tap sits after the brain in either graph; a trip interrupts the response.
    tap, _input_filter = build_guardrails(agent.guardrails)
    # [chained]: the chained slots' engines in order (used by --mode chained).
    return agent.instructions or DEFAULT_INSTRUCTIONS, tap, agent.chained


async def _run(spec: Any, brain: str, script: Path | None, metrics_port: int | None = None) -> Any:
    from voxpipe.pipelines.simulated_call import Mode, simulate_call

    needs_server = spec.mode is Mode.REALTIME and not (
        spec.server_url or spec.api_key or os.environ.get("OPENAI_API_KEY")
    )
    if needs_server:
        spec.server_brain = await server_brain(brain, script)
    if metrics_port is None:
        return await simulate_call(spec)
    from voxpipe.observability.metrics import VoxpipeMetrics
    from voxpipe.transports.metrics_http import start_metrics_server

    spec.metrics = VoxpipeMetrics()
    server = await start_metrics_server(spec.metrics, port=metrics_port)
    print(f"metrics: {server.url}")
    try:
        return await simulate_call(spec)
    finally:
        await server.close()


async def server_brain(kind: str, script: Path | None = None) -> Any:
    """The in-process server's brain: the local engines, or a script."""
    from voxpipe.transports.realtime_server import ScriptedBrain, load_script

    if kind == "scripted":
        return ScriptedBrain(load_script(script) if script else None)
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    return await LocalBrain.load()


def print_call(result: Any, out: Path) -> None:
    """The call, turn by turn, and what the realtime path did, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from voxpipe.timeline import EventKind

    console = Console()
    table = Table(title="The call, turn by turn")
    for column in ("#", "caller said (heard)", "bot replied", "latency"):
        table.add_column(column)
    for i, turn in enumerate(result.turns, 1):
        latency = "-" if turn.latency_ms is None else f"{turn.latency_ms:.0f} ms"
        # Parentheses, not brackets: rich would read "[interrupted]" as markup.
        replied = turn.replied + (" (interrupted)" if turn.interrupted else "")
        table.add_row(str(i), turn.heard or "(audio)", replied, latency)
    console.print(table)
    timeline = result.timeline
    tools = [str(e.data.get("name")) for e in timeline.of(EventKind.TOOL_CALL_STARTED)]
    console.print(f"tool calls: {', '.join(tools) or 'none'}")
    for cut in timeline.of(EventKind.ITEM_TRUNCATED):
        console.print(
            f"barge-in at {cut.t_ms / 1000:.1f} s: response cancelled, item truncated at "
            f"{cut.data['audio_end_ms']} ms (played {cut.data['played_ms']} ms)"
        )
    for kind in (EventKind.RECONNECT, EventKind.ROLLOVER, EventKind.BRAIN_SWITCHED):
        for event in timeline.of(kind):
            console.print(f"{kind.value} at {event.t_ms / 1000:.1f} s: {event.data}")
    console.print("latency: from the end of the caller's turn to the first bot audio out")
    console.print(
        f"wrote {out / 'call.wav'} (caller left, bot right), transcript.json, timeline.jsonl"
    )
    console.print(f"report: {out / 'report.html'} (latency waterfalls, cost) and report.json")
