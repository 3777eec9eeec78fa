"""The echo guard on ``voxpipe serve``: the bot's echo never cuts it; the caller talking does.

Real parts on loopback: the aiohttp app, aiortc on both ends, the embedded
Realtime server with its server VAD (Silero), a scripted brain speaking with
the local voice (Piper, else eSpeak NG), so the echo is speech to the VAD.
The caller is an aiortc peer on a speakerphone without echo cancellation:
what it plays comes back into its microphone 20 dB quieter and
``ECHO_DELAY_MS`` later (on top of the network's own round trip), as the
page's ``?echo_db=-20`` does in a browser.

Without the guard the same call cuts the bot with its own voice (the first
test), so the second's 0 is a measurement, not a call that never had echo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from echo_calls import REPLIES, bot_speaking, cuts, serving_a_voice, the_call, until, until_quiet
from webrtc_peer import calling

from voxpipe.echo import EchoGuardConfig, Verdict
from voxpipe.engines import make_tts
from voxpipe.pipelines.live_call import LiveCall
from voxpipe.timeline import EventKind

ECHO_DB = -20.0
ECHO_DELAY_MS = 150  # the caller's playout buffer and room, on top of the loopback round trip
RATE = 16_000
QUESTION = "What time does the pharmacy open on Saturday?"
BARGE_IN = "Sorry, one more thing, could you say that again please?"


@pytest.fixture(scope="module")
def voice() -> Any:
    """The local voice, loaded once for the module's calls."""
    return make_tts()


@pytest.fixture
def lines(make_speech: Any, tmp_path: Path) -> dict[str, Path]:
    """The caller's recordings, spoken by the same local voice as the bot, at its level."""
    lead = tmp_path / "lead.wav"  # 1 s of silence: the call's first microphone audio
    sf.write(str(lead), np.zeros(RATE, dtype=np.float32), RATE, subtype="PCM_16")
    question = make_speech(QUESTION, lead_ms=0, tail_ms=0)
    return {"lead": lead, "question": question, "barge": make_speech(BARGE_IN, lead_ms=0)}


def _truncations(live: LiveCall) -> list[dict[str, Any]]:
    return [e.data for e in live.timeline.of(EventKind.ITEM_TRUNCATED)]


async def test_without_the_guard_the_bot_interrupts_itself(
    voice: Any, lines: dict[str, Path]
) -> None:
    async with (
        serving_a_voice(voice, guard=None, replies=[REPLIES[0]]) as serve,
        calling(serve.url, lines["lead"], echo_db=ECHO_DB, echo_delay_ms=ECHO_DELAY_MS) as caller,
    ):
        await until(lambda: bool(serve.app.calls), 30)
        live = the_call(serve)
        assert live.echo_guard is None
        assert caller.mic is not None
        caller.mic.say(lines["question"])
        await until(lambda: bot_speaking(live), 60)
        # Nobody says anything more, yet the bot's own voice cuts it, again and again.
        await until(lambda: any(cut.false for cut in cuts(live, caller)), 90)
        assert not caller.mic.spoke_between(cuts(live, caller)[-1].at_ms - 3_000, 1e18)


async def test_with_the_guard_the_bot_finishes_over_its_own_echo(
    voice: Any, lines: dict[str, Path]
) -> None:
    async with (
        serving_a_voice(voice, guard=EchoGuardConfig(), replies=[REPLIES[0]]) as serve,
        calling(serve.url, lines["lead"], echo_db=ECHO_DB, echo_delay_ms=ECHO_DELAY_MS) as caller,
    ):
        await until(lambda: bool(serve.app.calls), 30)
        live = the_call(serve)
        assert live.echo_guard is not None  # on by default for live calls
        assert caller.mic is not None
        caller.mic.say(lines["question"])
        await until(lambda: bot_speaking(live), 60)
        heard_before = caller.heard.loud_ms()
        # The whole reply plays out, then the call stays quiet: no echo turn, no new reply.
        await until(lambda: not bot_speaking(live), 90)
        await until_quiet(live, 3_000, 30)
        guard = live.echo_guard.guard
        assert cuts(live, caller) == []
        assert _truncations(live) == []
        assert len(live.timeline.of(EventKind.RESPONSE_CREATED)) == 1
        assert caller.heard.loud_ms() - heard_before > 3_000  # the reply was heard, not cut
        # The guard was what kept it so: it silenced the echo it heard.
        assert guard.counts[Verdict.ECHO] > 50
        assert guard.estimate.measured and guard.estimate.coupling_db < -12


async def test_with_the_guard_a_caller_talking_over_the_bot_still_cuts_it(
    voice: Any, lines: dict[str, Path]
) -> None:
    async with (
        serving_a_voice(voice, guard=EchoGuardConfig(), replies=[REPLIES[0]]) as serve,
        calling(serve.url, lines["lead"], echo_db=ECHO_DB, echo_delay_ms=ECHO_DELAY_MS) as caller,
    ):
        await until(lambda: bool(serve.app.calls), 30)
        live = the_call(serve)
        mic = caller.mic
        assert mic is not None
        mic.say(lines["question"])
        await until(lambda: bot_speaking(live), 60)
        started = caller.heard.loud_ms()
        await until(lambda: caller.heard.loud_ms() - started >= 1_500, 30)
        mic.say(lines["barge"])  # at the bot's own level, with the echo still coming back
        await until(lambda: bool(cuts(live, caller)), 20)
        await until(lambda: not mic.speaking, 20)
    barge = mic.said[-1]
    # The caller's words cut the bot (a pause within them may cut its next reply
    # too, as it would anyone's), and its echo never did.
    cut = cuts(live, caller)[0]
    assert barge.started_ms < cut.at_ms < barge.started_ms + 5_000
    assert not any(c.false for c in cuts(live, caller))
    # Truncated where the caller was: past the 1.5 s of it heard before talking,
    # within what had been sent by the cut (far short of the reply's ~9 s).
    truncated = _truncations(live)[0]
    began = live.timeline.of(EventKind.BOT_STARTED_SPEAKING)[0].t_ms
    assert 1_200 <= truncated["audio_end_ms"] <= cut.at_ms - began + 300
    assert live.echo_guard is not None
    assert live.echo_guard.guard.counts[Verdict.SPEECH] > 0
