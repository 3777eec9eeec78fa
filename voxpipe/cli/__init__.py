"""The ``voxpipe`` command line.

Each sub-command lives in its own module under ``voxpipe.cli`` and exposes
``add_parser(subparsers)`` which registers the command and sets ``func`` to an
entry point ``(args) -> int``. Modules are imported lazily by name so that a
cheap command (``voxpipe cost``) never loads pipecat or a model; the one-line
summaries ``voxpipe --help`` lists live here for the same reason.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from voxpipe.errors import VoxpipeError


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


# Sub-command name -> its module under voxpipe.cli and what it does. Add a line to add a command.
COMMANDS: dict[str, Command] = {
    "demo": Command("voxpipe.cli.demo", "run a whole simulated call offline, print its turns"),
    "call": Command("voxpipe.cli.call", "simulate a live call from a recording"),
    "batch": Command("voxpipe.cli.batch", "answer every recording in a folder (chained, offline)"),
    "realtime-server": Command(
        "voxpipe.cli.realtime_server", "serve the OpenAI Realtime protocol offline"
    ),
    "serve": Command("voxpipe.cli.serve", "take calls from browsers over WebRTC (offline default)"),
    "daily": Command("voxpipe.cli.daily", "join a Daily room as the agent (offline brain default)"),
    "eval": Command("voxpipe.cli.eval", "run scenario files as synthetic calls and grade them"),
    "cost": Command("voxpipe.cli.cost", "model a call's cost by length, with/without rollover"),
    "models": Command("voxpipe.cli.models", "prepare or check the offline model weights"),
}

VERBOSE_FLAGS = ("-v", "--verbose")


def summary(name: str) -> str:
    """The one-line help of command ``name`` (its module registers it with this)."""
    return COMMANDS[name].summary


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxpipe",
        description="Real-time voice agents: realtime or chained, one graph.",
        epilog="Log level: voxpipe's messages from INFO, pipecat's from WARNING; "
        "-v shows everything from DEBUG, VOXPIPE_LOG_LEVEL=LEVEL sets one level for all.",
    )
    parser.add_argument(
        *VERBOSE_FLAGS,
        action="store_true",
        help="log everything from DEBUG (pipecat's too)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, command in COMMANDS.items():
        # Import only the module that was asked for; list the others from the table.
        if name == wanted:
            importlib.import_module(command.module).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=command.summary)
    return parser


def _parse(parser: argparse.ArgumentParser, args_list: list[str]) -> argparse.Namespace:
    """Parse, accepting ``-v`` after the command too (``voxpipe demo -v``)."""
    args, extra = parser.parse_known_args(args_list)
    unknown = [a for a in extra if a not in VERBOSE_FLAGS]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.verbose = args.verbose or bool(extra)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from voxpipe.logs import configure_logging

    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = _parse(parser, args_list)
    try:
        configure_logging(verbose=args.verbose)
    except VoxpipeError as exc:
        print(f"voxpipe: error: {exc}", file=sys.stderr)
        return 2
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
