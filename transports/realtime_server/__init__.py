"""voxpipe's OpenAI-Realtime-protocol (GA) server.

Start one in process (tests, benchmarks)::

    from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server

    async with running_realtime_server(config=ServerConfig(api_key="k")) as srv:
        ...  # srv.ws_base_url, srv.realtime_url, srv.arm(fault)

or from the command line: ``voxpipe realtime-server --port 8765``.
"""

from voxpipe.transports.realtime_server.app import RealtimeServer, ServerConfig
from voxpipe.transports.realtime_server.brains import (
    Brain,
    ScriptedBrain,
    ScriptedFunctionCall,
    SyntheticVoice,
    load_script,
    parse_script,
)
from voxpipe.transports.realtime_server.faults import (
    CloseMidResponse,
    ExhaustRateLimits,
    FaultInjector,
    FaultKind,
    RefuseNextConnection,
    SendError,
    Stall,
)
from voxpipe.transports.realtime_server.serving import RunningServer, running_realtime_server

__all__ = [
    "Brain",
    "CloseMidResponse",
    "ExhaustRateLimits",
    "FaultInjector",
    "FaultKind",
    "RealtimeServer",
    "RefuseNextConnection",
    "RunningServer",
    "ScriptedBrain",
    "ScriptedFunctionCall",
    "SendError",
    "ServerConfig",
    "Stall",
    "SyntheticVoice",
    "load_script",
    "parse_script",
    "running_realtime_server",
]
