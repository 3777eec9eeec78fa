"""``voxpipe daily``: the agent joins a Daily room as a participant, offline brain by default.

``voxpipe daily https://TEAM.daily.co/ROOM [--token T]`` joins the room and
runs one call: the same graph, guardrails, timeline, report and ``--record``
artifacts as ``voxpipe call``. It greets the first participant who joins,
listens to one participant at a time (the first, or ``--listen-to NAME``),
and leaves when the last human does (``--stay`` keeps it in the room until
Ctrl-C or ``--max-secs``). Realtime mode talks to ``--server``, to OpenAI
when a key is set, or else to an in-process ``voxpipe realtime-server``.
``start`` + ``[agents.<name>]`` in ``--config`` run as in ``voxpipe call``
(handoffs only; an agent's ``tools`` need the Python API).

With ``DAILY_API_KEY`` set, ``voxpipe daily --create-room`` creates a private
room that expires after ``--room-minutes``, prints the link a human opens to
join, and joins it. A room that cannot be joined (unreachable API, no such
room, an expired token) fails within ``--join-timeout`` seconds (15) with
the reason, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from voxpipe.cli import summary
from voxpipe.cli.fallback import add_fallback_option

DEFAULT_API_URL = "https://api.daily.co/v1"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "daily",
        help=summary("daily"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("room_url", nargs="?", default=None, help="the room to join")
    parser.add_argument("--token", default=None, help="a meeting token (private rooms)")
    parser.add_argument("--mode", choices=["realtime", "chained"], default="realtime")
    add_fallback_option(parser)
    parser.add_argument("--server", default=None, help="Realtime endpoint (ws://.../v1/realtime)")
    parser.add_argument("--api-key", default=None, help="the key for --server")
    parser.add_argument("--config", type=Path, default=None, help="agent.toml")
    parser.add_argument("--brain", choices=["local", "scripted"], default="local")
    parser.add_argument("--script", type=Path, default=None, help="script for --brain scripted")
    parser.add_argument("--record", type=Path, default=None, help="write the call to DIR/<id>/")
    parser.add_argument("--bot-name", default="voxpipe", help="the agent's name in the room")
    parser.add_argument("--listen-to", default=None, help="listen to this participant only")
    parser.add_argument(
        "--stay", action="store_true", help="stay when the last human leaves (until Ctrl-C)"
    )
    parser.add_argument("--no-greeting", action="store_true", help="do not greet the first human")
    parser.add_argument("--join-timeout", type=float, default=15.0, help="seconds (15)")
    parser.add_argument("--max-secs", type=float, default=None, help="end the call after this")
    parser.add_argument(
        "--create-room",
        action="store_true",
        help="create a short-lived private room first (needs DAILY_API_KEY)",
    )
    parser.add_argument("--room-minutes", type=float, default=60.0, help="its lifetime (60)")
    parser.add_argument(
        "--api-url",
        default=os.environ.get("DAILY_API_URL", DEFAULT_API_URL),
        help="Daily's REST API (DAILY_API_URL)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voxpipe.cli.serve import _agents, _delegate
    from voxpipe.errors import ConfigError

    if args.create_room == (args.room_url is not None):
        raise ConfigError("give a ROOM_URL or --create-room (one of them)")
    if args.join_timeout <= 0:
        raise ConfigError("--join-timeout must be positive")
    _delegate(args)  # a [delegate] the mode would not carry out fails before joining
    _agents(args)  # so do [agents] the call could not run
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_daily(args))
    return 0


async def _daily(args: argparse.Namespace) -> None:
    from voxpipe.cli.call import server_brain
    from voxpipe.cli.serve import _agent, _agents, _delegate, _slots
    from voxpipe.daily.room import EndWhen
    from voxpipe.pipelines.live_call import LiveCallSpec
    from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
    from voxpipe.transports.daily.call import DEFAULT_GREETING, DailyCall, RoomOptions

    room_url, token = args.room_url, args.token
    if args.create_room:
        room_url, token = await _create_room(args)
    options = RoomOptions(
        room_url,
        token,
        args.bot_name,
        listen_to=args.listen_to,
        end_when=EndWhen.NEVER if args.stay else EndWhen.LAST_HUMAN_LEFT,
        join_timeout_s=args.join_timeout,
        greeting=None if args.no_greeting else DEFAULT_GREETING,
    )
    mode = Mode(args.mode)
    spec = LiveCallSpec(mode=mode, server_url=args.server, api_key=args.api_key)
    spec.record_dir, spec.max_secs = args.record, args.max_secs
    spec.fallback = _fallback(args)
    spec.delegate = _delegate(args)
    spec.agents = _agents(args)
    if args.config is not None:
        spec.instructions, spec.make_tap = _agent(args.config)
        spec.slots = _slots(args.config)
    brain = None
    if mode is Mode.REALTIME and not (
        args.server or args.api_key or os.environ.get("OPENAI_API_KEY")
    ):
        brain = await server_brain(args.brain, args.script)
    async with embedded_realtime(mode, args.server, args.api_key, brain) as (url, key):
        spec.server_url, spec.api_key = url, key
        call = DailyCall(options, spec)
        _end_on_signals(call)
        ended = await call.run()
    print(f"call {call.call.call_id} ended: {ended.value}")
    if call.call.out_dir is not None:
        print(f"artifacts: {call.call.out_dir}")


async def _create_room(args: argparse.Namespace) -> tuple[str, str]:
    from voxpipe.errors import ConfigError
    from voxpipe.transports.daily.rest import DailyRest

    api_key = os.environ.get("DAILY_API_KEY", "")
    if not api_key:
        raise ConfigError("--create-room needs DAILY_API_KEY (your Daily API key)")
    rest = DailyRest(api_key, args.api_url)
    room = await rest.create_room(minutes=args.room_minutes, bot_name=args.bot_name)
    print(f"room: {room.url} (expires in {args.room_minutes:g} min)")
    print(f"join: {room.join_link}", flush=True)
    return room.url, room.agent_token


def _end_on_signals(call: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, call.end)


def _fallback(args: argparse.Namespace) -> Any:
    from voxpipe.cli.fallback import fallback_config
    from voxpipe.guardrails.config import load_agent_file

    agent = load_agent_file(args.config) if args.config is not None else None
    return fallback_config(args.fallback, agent)
