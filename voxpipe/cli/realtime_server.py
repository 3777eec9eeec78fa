"""``voxpipe realtime-server``: the OpenAI-Realtime-protocol server on local models."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from voxpipe.cli import summary
from voxpipe.errors import ConfigError
from voxpipe.realtime_server.overload import DEFAULT_LAG_MS, DEFAULT_WINDOW_MS, OverloadLimits


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "realtime-server",
        help=summary("realtime-server"),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VOXPIPE_REALTIME_API_KEY"),
        help="bearer key clients must present (default: $VOXPIPE_REALTIME_API_KEY; "
        "none: any key except unknown ephemeral secrets)",
    )
    parser.add_argument("--brain", choices=["local", "scripted"], default="local")
    parser.add_argument("--script", type=Path, help="JSON list of replies for --brain scripted")
    parser.add_argument(
        "--voice",
        choices=["auto", "synthetic", "piper", "espeak"],
        default="auto",
        help="scripted brain's voice: the local TTS when installed (auto), or a synthetic hum",
    )
    parser.add_argument("--session-max-seconds", type=float, default=3600.0)
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=250,
        help="live sessions at most; past it an upgrade is a 503 (default 250)",
    )
    parser.add_argument(
        "--overload-lag-ms",
        type=float,
        default=DEFAULT_LAG_MS,
        help="refuse a new session (503 server_overloaded) while the event loop runs this "
        f"late, median over {DEFAULT_WINDOW_MS // 1000} s (default {DEFAULT_LAG_MS:.0f}; 0: never)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin whose pages may open sessions (repeatable; '*' any); "
        "by default a request from a browser page is refused",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (wss)")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM key of --tls-cert")
    parser.add_argument(
        "--fault-injection",
        action="store_true",
        help="enable POST /v1/_voxpipe/faults (needs --api-key); for tests and benchmarks",
    )
    parser.set_defaults(func=run)


async def _build_brain(args: argparse.Namespace) -> Any:
    from voxpipe.transports.realtime_server.brains import ScriptedBrain, load_script

    if args.brain == "local":
        from voxpipe.transports.realtime_server.local_brain import LocalBrain

        return await LocalBrain.load()
    script = load_script(args.script) if args.script else None
    voice: Any = None
    if args.voice != "synthetic":
        voice = await _local_voice(args.voice)
    return ScriptedBrain(script, voice=voice, pace=1.5)


async def _local_voice(kind: str) -> Any:
    try:
        from voxpipe.engines import shared_tts

        return await shared_tts(kind)
    except Exception as exc:  # no TTS installed: the synthetic voice stands in
        if kind != "auto":
            raise ConfigError(f"the {kind} voice is not available: {exc}") from exc
        return None


async def _main(args: argparse.Namespace) -> None:
    from voxpipe.transports.realtime_server.app import RealtimeServer, ServerConfig
    from voxpipe.transports.realtime_server.serving import serve_forever

    if not args.api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"refusing to serve {args.host} without --api-key",
            hint="any client on the network could use the models otherwise",
        )
    if args.fault_injection and not args.api_key:
        raise ConfigError("--fault-injection needs --api-key", hint="fault control is keyed")
    config = ServerConfig(
        api_key=args.api_key,
        session_max_seconds=args.session_max_seconds,
        fault_injection=args.fault_injection,
        max_sessions=args.max_sessions,
        allowed_origins=tuple(o.rstrip("/") for o in args.allow_origin),
        overload=OverloadLimits(lag_ms=args.overload_lag_ms) if args.overload_lag_ms > 0 else None,
    )
    from voxpipe.transports.tls import server_tls

    tls = server_tls(args.tls_cert, args.tls_key)
    server = RealtimeServer(config, await _build_brain(args))
    scheme = "wss" if tls is not None else "ws"
    banner = (
        f"voxpipe realtime-server: {scheme}://{args.host}:{args.port}/v1/realtime "
        f"({args.brain} brain)"
    )
    await serve_forever(server, args.host, args.port, banner=banner, tls=tls)


def run(args: argparse.Namespace) -> int:
    if args.script and args.brain != "scripted":
        raise ConfigError("--script only applies to --brain scripted")
    asyncio.run(_main(args))
    return 0
