"""``voxpipe demo``: a whole simulated call, offline, printed turn by turn.

The default is the realtime path: the demo caller rings the pharmacy, asks
two questions (each answered after a tool call) and talks over the bot's
second answer, which is cancelled and truncated at what was heard. With no
key the brain is an in-process ``voxpipe realtime-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from voxpipe.cli import summary


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help=summary("demo"))
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output directory")
    parser.add_argument("--mode", choices=["realtime", "chained"], default="realtime")
    parser.add_argument(
        "--brain",
        choices=["scripted", "local"],
        default="scripted",
        help="realtime, no key: the in-process server's brain (a script, or the local engines)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="agent.toml: its [guardrails] guard the demo"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from voxpipe.cli.call import print_call
    from voxpipe.pipelines import demo_agent
    from voxpipe.pipelines.simulated_call import CallSpec, Mode

    console = Console()
    mode = Mode(args.mode)
    instructions, tap, slots = demo_agent.INSTRUCTIONS, None, None
    if args.config is not None:
        from voxpipe.cli.call import _agent

        configured, tap, slots = _agent(args.config)
        # The demo's pharmacy agent keeps its prompt unless the file sets one.
        instructions = configured if _sets_instructions(args.config) else instructions
    spec = CallSpec(
        input_path=demo_agent.caller_recording(),
        out_dir=args.out,
        mode=mode,
        instructions=instructions,
        tools=demo_agent.TOOLS,
        tap=tap,
        slots=slots,
    )
    console.print(f"[bold]voxpipe demo[/bold]: a caller rings the pharmacy ({_brain(args)})")
    result = asyncio.run(_run(spec, args.brain))
    print_call(result, args.out)
    return 0 if result.turns else 1


def _sets_instructions(path: Path) -> bool:
    from voxpipe.guardrails.config import load_agent_file

    return bool(load_agent_file(path).instructions)


def _brain(args: argparse.Namespace) -> str:
    if args.mode == "chained":
        return "chained path: local Whisper -> LLM -> TTS"
    if os.environ.get("OPENAI_API_KEY"):
        return "realtime path: OpenAI Realtime (OPENAI_API_KEY is set)"
    what = "a scripted brain" if args.brain == "scripted" else "the local engines"
    return f"realtime path: in-process voxpipe realtime-server with {what}, offline"


async def _run(spec: Any, brain: str) -> Any:
    from voxpipe.pipelines import demo_agent
    from voxpipe.pipelines.simulated_call import Mode, simulate_call

    if spec.mode is Mode.REALTIME and not os.environ.get("OPENAI_API_KEY"):
        if brain == "scripted":
            spec.server_brain = demo_agent.DemoBrain(await _local_stt())
        else:
            from voxpipe.cli.call import server_brain

            spec.server_brain = await server_brain("local")
    return await simulate_call(spec)


async def _local_stt() -> Any:
    """Local Whisper for the caller's transcript, if its weights are installed."""
    from voxpipe.engines import shared_stt
    from voxpipe.errors import ModelMissingError

    try:
        return await shared_stt()
    except (ModelMissingError, ImportError, OSError):
        return None
