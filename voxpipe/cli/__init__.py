"""The ``voxpipe`` command line.

Each sub-command lives in its own module under ``voxpipe.cli`` and exposes
``add_parser(subparsers)`` which registers the command and sets ``func`` to an
entry point ``(args) -> int``. Modules are imported lazily by name so that a
cheap command (``voxpipe cost``) never loads pipecat or a model.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from voxpipe.errors import VoxpipeError

# Sub-command name -> module under voxpipe.cli. Add a line to add a command.
COMMANDS: dict[str, str] = {
    "demo": "voxpipe.cli.demo",
    "batch": "voxpipe.cli.batch",
    "models": "voxpipe.cli.models",
    "realtime-server": "voxpipe.cli.realtime_server",
    "call": "voxpipe.cli.call",
    "cost": "voxpipe.cli.cost",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxpipe", description="Real-time voice agents: realtime or chained, one graph."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        # Import only the module that was asked for; list the others by name.
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=f"(run 'voxpipe {name} --help')")
    return parser


def _quiet_logs() -> None:
    """pipecat logs every frame at DEBUG; a command line shows warnings unless asked."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("VOXPIPE_LOG_LEVEL", "WARNING"))


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_logs()
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except VoxpipeError as exc:
        print(f"voxpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
