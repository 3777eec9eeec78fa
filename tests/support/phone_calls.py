"""Helpers for the phone-call tests on ``voxpipe serve`` (no tests here).

Real parts on loopback: aiohttp serving a provider's routes, the embedded
Realtime server (a scripted brain whose audio arrives twice as fast as it
plays), the voxpipe graph; the far end is a fake provider
(``fake_twilio``, ``fake_telnyx``, ``fake_plivo``) that records what it played.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fake_phone import FakeCarrier
from loopback import serving as serving_app
from realtime_calls import compose

from voxpipe.call.events import ItemTruncated
from voxpipe.pipelines.live_call import LiveCall, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.timeline import EventKind
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.telephony.transport import PhoneCallTransport
from voxpipe.transports.webrtc.app import ServeApp, ServeConfig

REPLIES = ["We open at nine on Saturday morning.", "Yes, we take cards and cash."]
# A barge-in keyed to what the caller hears (``FakeCarrier.barge_in``): the question,
# then the second line once a second of the reply has played.
QUESTION = [1000, "What time do you open on Saturday?", 500]
BARGE_IN = ["Sorry, one more thing.", 2500]
HEARD_BEFORE_BARGE_IN_MS = 1000.0
# How much of the reply may play over the caller's barge-in before the clear stops it,
# in milliseconds of the bot's audio the carrier played: what the caller hears, the
# figure the product is for (both one-way latencies included). Counted in audio, not
# wall-clock time: on a loaded 2-core machine the whole test process stalls at times
# (at load 16 the bot's audio reached the carrier at a sixth of real time; once at
# load 10 the clear came 8.7 s after the onset while 1660 ms played), so a wall-clock
# bound measures the machine. Measured 60-362 ms at load 7-13, 1660 ms at worst.
# A clear never sent for the barge-in lets the reply's ~11 s left play: fails.
TALKED_OVER_MS = 3000
ARTIFACTS = ("call.wav", "transcript.json", "timeline.jsonl", "report.json", "report.html")


@asynccontextmanager
async def serving(
    tmp_path: Path, replies: list[str] = REPLIES, brain: Any = None, **config: Any
) -> AsyncIterator[tuple[str, ServeApp]]:
    """``voxpipe serve`` with the given ``ServeConfig`` fields (``twilio=``, ``telnyx=``...).

    The embedded server answers with ``brain``, by default a scripted one saying ``replies``.
    """
    # The bot's audio arrives twice as fast as it plays.
    brain = brain if brain is not None else ScriptedBrain(replies, pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")
        serve = ServeApp(ServeConfig(call=spec, **config))
        async with serving_app(serve.build_app()) as base:
            yield base, serve


@asynccontextmanager
async def calling(
    fake: FakeCarrier, stream_url: str, parameters: dict[str, str]
) -> AsyncIterator[None]:
    """Run ``fake``'s stream for the duration; drop it at the end if it still runs."""
    task = asyncio.create_task(fake.run(stream_url, parameters))
    try:
        yield
    finally:
        if not task.done():
            await fake.drop()
        await asyncio.wait_for(task, 5)


async def until(predicate: Callable[[], Any], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the call's state
            await asyncio.sleep(0.02)


def barge_in_recordings(make_speech: Any, tmp_path: Path) -> tuple[Path, Path]:
    """The caller's question, and the line they barge in with (its speech starts at 0)."""
    question, barge_in = tmp_path / "question.wav", tmp_path / "barge_in.wav"
    compose(make_speech, QUESTION, question)
    ((start_ms, _),) = compose(make_speech, BARGE_IN, barge_in)
    assert start_ms == 0  # so the onset is when its first chunk was sent
    return question, barge_in


def the_call(serve: ServeApp) -> LiveCall:
    (entry,) = serve.calls.values()
    return entry.call


def phone_transport(call: LiveCall) -> PhoneCallTransport:
    transport = call.transport
    assert isinstance(transport, PhoneCallTransport)
    return transport


def ended_ms(call: LiveCall) -> float:
    """When the call ended, on its transport's clock (its artifacts are written after)."""
    (ended,) = call.timeline.of(EventKind.CALL_ENDED)
    return ended.t_ms


def artifacts(tmp_path: Path, call_id: str) -> list[str]:
    out = tmp_path / "calls" / call_id
    return [name for name in ARTIFACTS if (out / name).exists()]


async def heard_truncation(
    call: LiveCall, fake: FakeCarrier, timeout_s: float = 25
) -> tuple[ItemTruncated, list[tuple[ItemTruncated, float]]]:
    """The first ``conversation.item.truncate`` of a reply the caller heard some of.

    Also every truncation before it, with what the fake played of its item: a
    reply cut before it reached the caller (the caller's turn split by a pause)
    is truncated too, and must be at what was heard of it, nothing.
    """
    events: list[Any] = call.graph.brain.events  # type: ignore[attr-defined]

    def cuts() -> list[ItemTruncated]:
        return [e for e in events if isinstance(e, ItemTruncated)]

    await until(lambda: any(fake.heard_ms(c.item_id) > 0 for c in cuts()), timeout_s)
    before = []
    for cut in cuts():
        if fake.heard_ms(cut.item_id) > 0:
            return cut, before
        before.append((cut, fake.heard_ms(cut.item_id)))
    raise AssertionError("unreachable")
