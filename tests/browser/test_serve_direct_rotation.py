"""Secret rotation in ``voxpipe serve --direct``, in real headless Chromium (loopback namespace).

A direct call outlives the ephemeral secret that started it (a secret only gates starting a
call). When the page must make a new call after that (its connection was lost: the provider
cannot rejoin a call), voxpipe hands it a fresh secret, and seeds the new call with what was
said on the old one. Time is the provider's and voxpipe's shared clock, moved on by the test
past the first secret's TTL instead of waiting minutes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser import in_loopback_netns, launch_browser
from direct_serve import serving_direct
from test_serve_browser import (
    QUESTIONS,
    REPLIES,
    SpokenAhead,
    connected_call,
    microphone,
    on_page,
    say_once,
    until,
)

from voxpipe.realtime_server.effects import BrainOutput, BrainRequest
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

KEY = "sk-provider-key"
TTL_S = 60
BOT_FINALS = "window.voxpipe.captions.filter((c) => c.role === 'bot' && c.final).length"


class SharedClock:
    """Wall-clock time plus what the test moved it on by, for the provider and voxpipe alike."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def seconds(self) -> float:
        return time.time() + self.ahead_s

    def ms(self) -> int:
        return int(self.seconds() * 1000)


class Remembering(ScriptedBrain):
    """Reply n of the whole conversation: a session seeded with a summary holding k replies
    goes on with script entry k (an unseeded one would start the script again)."""

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        system = [m for m in request.messages if m.get("role") == "system"]
        said = sum(str(m.get("content", "")).count("assistant: ") for m in system)
        shifted = dataclasses.replace(request, turn_index=request.turn_index + said)
        async for output in super().respond(shifted):
            yield output


@pytest.mark.timeout(300)
@in_loopback_netns
async def test_a_call_that_outlives_its_secret_reconnects_with_a_fresh_one(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, seconds = microphone(make_speech, mic, QUESTIONS[0], QUESTIONS[1])
    clock = SharedClock()
    voice = await SpokenAhead.speaking(REPLIES)
    brain = Remembering(list(REPLIES), voice=voice, pace=2.0)
    server = ServerConfig(api_key=KEY, clock=clock.seconds)
    async with (
        running_realtime_server(config=server, brain=brain) as srv,
        serving_direct(
            srv,
            api_key=KEY,
            page_origin_allowed=True,
            secret_ttl_s=TTL_S,
            clock_ms=clock.ms,
            record_dir=tmp_path / "calls",
        ) as serve,
        launch_browser(mic) as browser,
    ):
        calls = serve.app.direct
        assert calls is not None
        first_call = await connected_call(browser, serve.url, muted=True)
        first = calls.secrets.policy.secret if calls.secrets else None
        assert first is not None and first.expires_at_ms is not None
        await say_once(browser, firsts)
        await on_page(browser, f"{BOT_FINALS} >= 1", 120, "no answer on the first call")

        # Past the first secret's TTL: the provider refuses it now, the call goes on.
        clock.ahead_s += TTL_S + 30
        assert srv.server.secrets.lookup(first.value, clock.seconds()) is None
        assert first_call in srv.server.calls.calls
        assert await browser.evaluate("window.voxpipe.state") == "connected"

        # The page's connection is lost (a network switch): a new call, a fresh secret.
        await browser.evaluate("window.voxpipe.rejoin()")
        await on_page(
            browser,
            f"window.voxpipe.state === 'connected' && window.voxpipe.callId !== '{first_call}'",
            60,
            "the page made no new call",
        )
        second_call = await browser.evaluate("window.voxpipe.callId")
        now_s = clock.seconds()
        await say_once(browser, seconds)  # asked on the new call
        await on_page(browser, f"{BOT_FINALS} >= 2", 120, "no answer on the new call")
        page = await browser.evaluate("window.voxpipe")
        await until(lambda: first_call not in srv.server.calls.calls, 60)
        await until(lambda: calls.calls[first_call].ended.is_set(), 30)
        sidebands = set(calls.calls)
        await browser.evaluate("window.voxpipe.hangup()")
    expiries = page["secretExpiries"]
    assert len(expiries) == 2 and expiries[0] == first.expires_at_ms // 1000
    assert expiries[0] < now_s  # the first had expired...
    assert expiries[1] - now_s > 30  # ...the new one has more than the refresh margin left
    assert page["resumed"] is False and page["counters"]["rejoins"] == 1
    assert page["errors"] == []
    assert sidebands == {first_call, second_call}  # voxpipe followed the page to the new call
    # The new call went on from the old one's summary: its first reply is the script's second
    # (an unseeded session would have said the first again).
    finals = [c["text"] for c in page["captions"] if c["role"] == "bot" and c["final"]]
    assert finals == REPLIES
