"""Calls to a real ``voxpipe serve`` from a speakerphone without echo cancellation (no tests here).

The bot speaks with the local voice (Piper, else eSpeak NG), so what leaks
back into the caller's microphone is speech to the Realtime server's VAD, as
it would be; the caller is the aiortc peer of :mod:`webrtc_peer` with its
:class:`~webrtc_peer.EchoLine`. The test and the benchmark share these.

A *cut* is the bot's reply truncated while it played (``item_truncated`` in
the call's timeline); a *false barge-in* is a cut while the caller had not
said anything for ``FALSE_CUT_MS`` before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from webrtc_peer import Caller

from voxpipe.echo import EchoGuardConfig
from voxpipe.pipelines.live_call import LiveCall, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.webrtc.app import RunningServe, ServeConfig, running_serve

FALSE_CUT_MS = 3_000  # a cut this long after the caller last spoke was not theirs
REPLIES = [
    "Our pharmacy opens at nine in the morning on Saturday. On Sunday it is closed all day, "
    "but the one on Market Street stays open until six.",
    "We take cards and cash at every counter. Contactless payments work as well, up to any amount.",
]


@asynccontextmanager
async def serving_a_voice(
    voice: Any, *, guard: EchoGuardConfig | None, replies: list[str] = REPLIES
) -> AsyncIterator[RunningServe]:
    """``voxpipe serve`` on the embedded Realtime server, replying in ``voice``."""
    brain = ScriptedBrain(replies, voice=voice, pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, echo_guard=guard)
        async with running_serve(ServeConfig(call=spec)) as serve:
            yield serve


@dataclass(frozen=True)
class Cut:
    """The bot was cut at ``at_ms`` (the transport's clock, monotonic ms)."""

    at_ms: float
    false: bool  # the caller had said nothing for FALSE_CUT_MS before it


def cuts(live: LiveCall, caller: Caller) -> list[Cut]:
    """Every cut of the bot so far, told apart by whether the caller had spoken."""
    assert caller.mic is not None
    return [
        Cut(e.t_ms, not caller.mic.spoke_between(e.t_ms - FALSE_CUT_MS, e.t_ms))
        for e in live.timeline.of(EventKind.ITEM_TRUNCATED)
    ]


def bot_speaking(live: LiveCall) -> bool:
    """Whether the bot started speaking and has not stopped since."""
    started = live.timeline.of(EventKind.BOT_STARTED_SPEAKING)
    stopped = live.timeline.of(EventKind.BOT_STOPPED_SPEAKING)
    return bool(started) and (not stopped or stopped[-1].t_ms < started[-1].t_ms)


async def until(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Wait for ``predicate`` (the server's or the caller's state) to hold."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - state of the call, not an event
            await asyncio.sleep(0.05)


async def until_quiet(live: LiveCall, quiet_ms: float, timeout_s: float) -> None:
    """Wait until the call has been listening for ``quiet_ms``: no reply made, played or cut."""

    def quiet() -> bool:
        changes = live.timeline.of(EventKind.STATE_CHANGED)
        if not changes or changes[-1].data["to"] != "listening":
            return False
        return live.transport.now_ms() - changes[-1].t_ms >= quiet_ms

    await until(quiet, timeout_s)


def the_call(serve: RunningServe) -> LiveCall:
    """The one live call on ``serve``."""
    (entry,) = serve.app.calls.values()
    return entry.call
