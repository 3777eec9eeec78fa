"""``voxpipe serve``: take calls from browsers over WebRTC, offline by default.

Open ``http://HOST:PORT/`` and press Talk. Each peer connection is one voxpipe
call with the same graph, guardrails, timeline and report as ``voxpipe call``:
realtime mode talks to ``--server``, to OpenAI when a key is set, or else to an
in-process ``voxpipe realtime-server`` whose brain is the local engines
(``--brain local``) or a script (``--brain scripted``). ``--record DIR`` writes
every call's artifacts to ``DIR/<call-id>/``. The server binds loopback by
default; on another address every offer needs a call token (``voxpipe serve
token`` prints one; the secret comes from ``VOXPIPE_SERVE_SECRET``).
``--twilio``, ``--telnyx`` and ``--plivo`` also answer phone calls: point the
number's voice webhook at ``https://HOST/twilio/voice`` (``/telnyx/voice``,
``/plivo/voice``).

``--direct``: the page connects to the Realtime provider itself (WebRTC call
API, a short-lived secret from this server) and voxpipe attaches to the call
over the provider's sideband, where it runs the guardrails, server-side tools,
timeline, cost and report; no audio passes through voxpipe (``--record``
writes no ``call.wav``).

``start`` + ``[agents.<name>]`` in ``--config``: every call starts with the
start agent and hands off through ``transfer_to_<name>`` tools; refused before
serving when an agent lists ``tools`` (no handlers here: the Python API runs
them), beside a fallback brain, ``[delegate]`` or ``--direct``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxpipe.cli import summary
from voxpipe.cli.fallback import add_fallback_option

if TYPE_CHECKING:
    from voxpipe.echo import EchoGuardConfig


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=summary("serve"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", choices=["run", "token"], default="run")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mode", choices=["realtime", "chained"], default="realtime")
    add_fallback_option(parser)
    parser.add_argument("--server", default=None, help="Realtime endpoint (ws://.../v1/realtime)")
    parser.add_argument("--api-key", default=None, help="the key for --server")
    parser.add_argument("--config", type=Path, default=None, help="agent.toml")
    parser.add_argument("--brain", choices=["local", "scripted"], default="local")
    parser.add_argument("--script", type=Path, default=None, help="script for --brain scripted")
    parser.add_argument(
        "--ice-server", action="append", default=[], help="STUN/TURN URL (repeatable)"
    )
    parser.add_argument("--max-calls", type=int, default=8, help="answer 503 beyond this many")
    parser.add_argument(
        "--overload-lag-ms",
        type=float,
        default=0.0,
        help="refuse a new call (503 overloaded) while the event loop runs this late, median "
        "over 2 s (e.g. 50; default 0: never; the calls' local models share this process)",
    )
    parser.add_argument("--record", type=Path, default=None, help="write each call to DIR/<id>/")
    parser.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port")
    parser.add_argument(
        "--no-echo-guard",
        action="store_true",
        help="let the caller's audio reach turn detection even when it is only the bot's own "
        "voice coming back (on by default for browser calls; phone streams take it from their "
        "config)",
    )
    parser.add_argument(
        "--echo-margin-db",
        type=float,
        default=None,
        help="caller audio must be this far above the echo estimate to count as speech "
        "(default 6; higher: fewer false barge-ins, a quieter caller cuts the bot later)",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="the page calls the provider directly over WebRTC; voxpipe runs the call's "
        "controls on the provider's sideband (no audio through voxpipe)",
    )
    parser.add_argument(
        "--secret-ttl",
        type=int,
        default=120,
        help="--direct: seconds a page's provider secret lives (60-300, default 120)",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (https)")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM key of --tls-cert")
    parser.add_argument(
        "--twilio",
        action="store_true",
        help="take phone calls too: POST /twilio/voice (TwiML) and the /twilio media stream; "
        "TWILIO_AUTH_TOKEN checks signatures (required beyond loopback), "
        "VOXPIPE_PUBLIC_URL is the URL Twilio reaches",
    )
    parser.add_argument(
        "--telnyx",
        action="store_true",
        help="take Telnyx calls: POST /telnyx/voice (TeXML) and the /telnyx media stream; "
        "TELNYX_PUBLIC_KEY checks signatures (required beyond loopback), "
        "TELNYX_CODEC is PCMU (default) or PCMA",
    )
    parser.add_argument(
        "--plivo",
        action="store_true",
        help="take Plivo calls: POST /plivo/voice (Plivo XML) and the /plivo audio stream; "
        "PLIVO_AUTH_TOKEN checks signatures (required beyond loopback)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voxpipe.webrtc.call_tokens import CallTokens, server_secret

    if args.action == "token":
        print(CallTokens(server_secret(required=True).value).mint(_now()))
        return 0
    if args.max_calls < 1:
        from voxpipe.errors import ConfigError

        raise ConfigError("--max-calls must be at least 1")
    if args.overload_lag_ms < 0:
        raise ConfigError("--overload-lag-ms must be 0 (never) or above")
    guard = echo_guard(args)  # bad flags fail before anything starts
    _delegate(args)  # so does a [delegate] the mode would not carry out
    _agents(args)  # and [agents] these calls could not run
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args, guard))
    return 0


def echo_guard(args: argparse.Namespace) -> EchoGuardConfig | None:
    """The live calls' echo guard from ``--no-echo-guard`` and ``--echo-margin-db``."""
    from voxpipe.echo import EchoGuardConfig
    from voxpipe.errors import ConfigError

    if args.no_echo_guard:
        if args.echo_margin_db is not None:
            raise ConfigError("--echo-margin-db tunes the echo guard; --no-echo-guard turns it off")
        return None
    if args.echo_margin_db is None:
        return EchoGuardConfig()
    if not 0 <= args.echo_margin_db <= 40:
        raise ConfigError(f"--echo-margin-db must be 0 to 40 dB, not {args.echo_margin_db}")
    return EchoGuardConfig(margin_db=args.echo_margin_db)


def _now() -> float:
    return time.time()


async def _serve(args: argparse.Namespace, guard: EchoGuardConfig | None) -> None:
    from loguru import logger

    from voxpipe.cli.call import server_brain
    from voxpipe.pipelines.live_call import LiveCallSpec
    from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
    from voxpipe.realtime_server.overload import OverloadLimits
    from voxpipe.transports.telephony.plivo_routes import PlivoConfig
    from voxpipe.transports.telephony.routes import TwilioConfig
    from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig
    from voxpipe.transports.tls import server_tls
    from voxpipe.transports.webrtc.app import ServeConfig, running_serve
    from voxpipe.transports.webrtc.ice import is_loopback_host
    from voxpipe.webrtc.call_tokens import CallTokens, server_secret

    tls = server_tls(args.tls_cert, args.tls_key)  # a bad pair fails before anything starts
    loopback = is_loopback_host(args.host)
    twilio = TwilioConfig.for_serve(loopback) if args.twilio else None
    telnyx = TelnyxConfig.for_serve(loopback) if args.telnyx else None
    plivo = PlivoConfig.for_serve(loopback) if args.plivo else None
    mode = Mode(args.mode)
    spec = LiveCallSpec(mode=mode, server_url=args.server, api_key=args.api_key, echo_guard=guard)
    if args.config is not None:
        spec.instructions, spec.make_tap = _agent(args.config)
        spec.slots = _slots(args.config)
        _rest_hangups(args.config, twilio=twilio, telnyx=telnyx, plivo=plivo)
    spec.record_dir = args.record
    spec.fallback = _fallback(args)
    spec.delegate = _delegate(args)
    spec.agents = _agents(args)
    tokens = None if is_loopback_host(args.host) else CallTokens(server_secret().value)
    brain = None
    embedded = mode is Mode.REALTIME and not (
        args.server or args.api_key or os.environ.get("OPENAI_API_KEY")
    )
    if embedded:
        brain = await server_brain(args.brain, args.script)
    provider = (
        _direct_provider(args, brain) if args.direct and embedded else contextlib.nullcontext()
    )
    async with (
        provider as direct_endpoint,
        embedded_realtime(mode, args.server, args.api_key, None if args.direct else brain) as (
            url,
            key,
        ),
    ):
        if direct_endpoint is not None:
            url, key = direct_endpoint
        spec.server_url, spec.api_key = url, key
        direct = _direct_config(args, url, key, spec.instructions) if args.direct else None
        config = ServeConfig(
            host=args.host,
            call=spec,
            ice_servers=list(args.ice_server),
            max_calls=args.max_calls,
            overload=OverloadLimits(lag_ms=args.overload_lag_ms)
            if args.overload_lag_ms > 0
            else None,
            call_tokens=tokens,
            twilio=twilio,
            telnyx=telnyx,
            plivo=plivo,
            direct=direct,
        )
        async with running_serve(config, port=args.port, tls=tls) as serving:
            logger.info(f"voxpipe serve: open {serving.url}/ and press Talk")
            await _until_stopped()


@contextlib.asynccontextmanager
async def _direct_provider(args: argparse.Namespace, brain: Any) -> Any:
    """The embedded provider for ``--direct``: its page (this server's origin) may call it."""
    from voxpipe.pipelines.simulated_call import LOCAL_SERVER_KEY
    from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server

    scheme = "https" if args.tls_cert else "http"
    origins = tuple(f"{scheme}://{host}:{args.port}" for host in (args.host, "localhost"))
    config = ServerConfig(api_key=LOCAL_SERVER_KEY, allowed_origins=origins)
    async with running_realtime_server(config=config, brain=brain, host=args.host) as server:
        yield server.realtime_url, LOCAL_SERVER_KEY


def _direct_config(
    args: argparse.Namespace, url: str | None, key: str | None, instructions: str | None
) -> Any:
    """Where the page's provider is, and the session its secrets carry."""
    from voxpipe.guardrails.config import load_agent_file
    from voxpipe.guardrails.policy import IncrementalScanner
    from voxpipe.transports.webrtc.direct import DirectConfig

    if url is None:  # OpenAI's own endpoints, as the openai package knows them
        import openai

        url = str(openai.AsyncOpenAI(api_key=key or "unused").base_url)
    base = url.rstrip("/").removesuffix("/realtime")
    http = base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    ws = http.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    session: dict[str, Any] = {"type": "realtime", "model": "gpt-realtime"}
    if instructions:
        session["instructions"] = instructions
    policies: list[IncrementalScanner] = []
    if args.config is not None:
        found = load_agent_file(args.config).guardrails.policies()
        policies = [p for p in found if isinstance(p, IncrementalScanner)]
    return DirectConfig(
        provider_http=http,
        provider_ws=ws,
        api_key=key or os.environ.get("OPENAI_API_KEY"),
        session=session,
        policies=policies,
        secret_ttl_s=args.secret_ttl,
        record_dir=args.record,
    )


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _rest_hangups(path: Path, **phones: Any) -> None:
    """``[telephony] hangup = "rest"``: each provider taken hangs up through its REST API.

    Its credentials must be in the environment, else a ``ConfigError`` before serving.
    """
    from voxpipe.guardrails.config import load_agent_file
    from voxpipe.telephony.events import Provider
    from voxpipe.telephony.hangup import RestHangup

    telephony = load_agent_file(path).telephony
    for name, config in phones.items():
        if config is not None:
            config.rest_hangup = RestHangup.from_env(Provider(name), telephony, os.environ)


def _agent(path: Path) -> tuple[str, Any]:
    from voxpipe.guardrails.config import load_agent_file
    from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
    from voxpipe.processors.guardrails.input import build_guardrails

    agent = load_agent_file(path)

    def make_tap() -> Any:
        tap, _input_filter = build_guardrails(agent.guardrails)
        return tap

    return agent.instructions or DEFAULT_INSTRUCTIONS, make_tap


def _slots(path: Path) -> Any:
    """The chained slots' engines in order (``[chained]``), for chained calls and failover."""
    from voxpipe.guardrails.config import load_agent_file

    return load_agent_file(path).chained


def _delegate(args: argparse.Namespace) -> Any:
    """``[delegate]`` of ``--config``, checked for the mode (a live call of any kind)."""
    from voxpipe.cli.delegate import delegate_settings
    from voxpipe.guardrails.config import load_agent_file

    agent = load_agent_file(args.config) if args.config is not None else None
    return delegate_settings(agent, args.mode, _fallback(args))


def _agents(args: argparse.Namespace) -> Any:
    """``start`` + ``[agents]`` of ``--config``, checked for the mode (``voxpipe.cli.agents``)."""
    from voxpipe.cli.agents import agents_config
    from voxpipe.guardrails.config import load_agent_file

    agent = load_agent_file(args.config) if args.config is not None else None
    direct = bool(getattr(args, "direct", False))  # voxpipe daily has no --direct
    return agents_config(agent, args.mode, _fallback(args), direct=direct)


def _fallback(args: argparse.Namespace) -> Any:
    from voxpipe.cli.fallback import fallback_config
    from voxpipe.guardrails.config import load_agent_file

    agent = load_agent_file(args.config) if args.config is not None else None
    return fallback_config(args.fallback, agent)
