"""``--fallback chained``: the option ``voxpipe call``, ``serve`` and ``daily`` share.

A realtime call with a fallback moves to the chained brain (local VAD, STT,
LLM, TTS) when the realtime brain fails; ``[fallback]`` in ``agent.toml``
turns it on and tunes it, ``--fallback none`` turns it off for one run.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxpipe.call.failover import FailoverConfig


def add_fallback_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--fallback {chained,none}``."""
    parser.add_argument(
        "--fallback",
        choices=["chained", "none"],
        default=None,
        help="realtime mode: move the call to the chained brain when the realtime brain "
        "fails (default: as [fallback] in --config says; none without it)",
    )


def fallback_config(choice: str | None, agent: Any = None) -> FailoverConfig | None:
    """The call's fallback: the option's word over the agent file's ``[fallback]``."""
    from voxpipe.call.failover import FailoverConfig

    configured = getattr(agent, "fallback", None)
    if choice == "none":
        return None
    if choice == "chained":
        return configured or FailoverConfig()
    return configured
