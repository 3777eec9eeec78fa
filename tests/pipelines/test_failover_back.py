"""Back from the chained brain to the realtime one, mid-call (real local models, loopback server).

The realtime side is voxpipe's server with fault injection: an
``insufficient_quota`` error moves the call to the chained brain at once;
the server's next sessions are healthy (the fault is over) unless the test
arms refused connections, which the health probes then meet. The server's
brain answers at once without transcribing (at load 17 its Whisper outlasted
the call's 15 s thinking limit, and the first reply never came). Every wait
is on an event, with deadlines a loaded 2-core machine keeps.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from failover_calls import FailoverCall, failover_call
from hearing import content_words

from voxpipe.call.events import ResponseCreated
from voxpipe.call.failover import Brain, FailoverConfig, SwitchReason
from voxpipe.call.probe import ProbeOutcome
from voxpipe.call.state import CallState
from voxpipe.engines import LocalEngines
from voxpipe.evaluation import normalise, word_error_rate
from voxpipe.transports.realtime_server import RefuseNextConnection, SendError

pytestmark = pytest.mark.models

REALTIME_REPLY = "Realtime desk here, glad to help you with that."
QUOTA = SendError(
    error_type="insufficient_quota", code="insufficient_quota", message="insufficient_quota"
)
# Hang detection out of the way (the server's Whisper is slow under load). The cooldown
# outlasts the caller's question reaching the chained brain's VAD (seconds under load: a
# cooldown over before it would find the call between turns) and mostly ends while the
# chained brain is still answering, so the switch back waits for the turn boundary.
BACK = FailoverConfig(
    first_audio_deadline_ms=30_000,
    stall_ms=30_000,
    cooldown_ms=8_000,
    probe_interval_ms=1_000,
    probes_needed=2,
)


async def _first_realtime_turn_then_quota(call: FailoverCall) -> None:
    """The first line answered on realtime and heard; then the quota runs out."""
    await call.until(lambda: bool(call.of(ResponseCreated)), 90, "the first reply")
    await call.until(lambda: REALTIME_REPLY in call.answers(), 90, "the first reply's text")
    await call.until(
        lambda: call.service.machine.state is CallState.LISTENING, 60, "the reply heard"
    )
    assert call.server is not None
    call.server.arm(QUOTA)
    await call.until(lambda: bool(call.brain.switched), 30, "the switch to chained")


def _probe_sessions(call: FailoverCall) -> list[tuple[str, int]]:
    """Sessions the server saw opened and closed with not one client message: the probes."""
    assert call.server is not None
    return [s for s in call.server.server.closed_sessions if s[1] == 0]


async def test_the_call_comes_back_to_realtime_at_a_turn_boundary_after_healthy_probes(
    make_speech: Any, loaded_engines: LocalEngines
) -> None:
    lines = [
        make_speech("Hello, I have a question for you.", lead_ms=500, tail_ms=1500),
        make_speech("What is the capital of Italy?", lead_ms=300, tail_ms=1500),
        make_speech("And what is the capital of France?", lead_ms=300, tail_ms=1500),
    ]
    async with failover_call(
        lines, loaded_engines, script=[REALTIME_REPLY], failover=BACK, server_hears=False
    ) as call:
        await _first_realtime_turn_then_quota(call)
        call.caller.cue()  # asked of the chained brain
        await call.until(lambda: len(call.brain.switched) >= 2, 180, "the switch back")
        back_at = call.brain.policy.switches[-1].at_ms
        chained_answers = call.answers()
        requests_before = len(call.realtime_brain.requests) if call.realtime_brain else 0
        call.caller.cue()
        await call.until(
            lambda: any(t > back_at for t in call.crossings.realtime_audio_ms),
            120,
            "the realtime brain's answer",
        )
        await call.until(
            lambda: call.service.machine.state is CallState.LISTENING, 60, "that answer heard"
        )
        probes = list(call.brain.probes)
        probe_sessions = _probe_sessions(call)

    away, back = call.brain.switched
    assert (away.current, away.reason) == (Brain.CHAINED, SwitchReason.QUOTA_EXHAUSTED)
    assert (back.previous, back.current) == (Brain.CHAINED, Brain.REALTIME)
    assert back.reason is SwitchReason.REALTIME_HEALTHY
    away_at = call.brain.policy.switches[0].at_ms
    assert back_at - away_at >= BACK.cooldown_ms
    # Two healthy probes before it, and every probe a bare session open: nothing sent on it.
    assert [p.outcome for p in probes[:2]] == [ProbeOutcome.HEALTHY] * 2, probes
    assert len(probe_sessions) >= 2, list(call.server.server.closed_sessions)  # type: ignore[union-attr]
    # At a turn boundary: the chained brain had answered the caller, and its answer was
    # out (played) before the switch; nothing of it came after.
    assert len(chained_answers) == 2 and chained_answers[0] == REALTIME_REPLY, chained_answers
    chained_answer = chained_answers[1]  # the local models' (Whisper may mishear under load)
    assert call.crossings.chained_audio_ms
    assert all(t < back_at for t in call.crossings.chained_audio_ms)
    assert all(t < back_at for t in call.crossings.chained_replies_ms)
    # The next answer is the realtime brain's, from a session seeded with what the caller
    # heard on the chained brain.
    assert call.realtime_brain is not None
    asked = call.realtime_brain.requests[requests_before:]
    assert asked, "the realtime brain was not asked after the switch back"
    seen = set(content_words(" ".join(str(m) for m in asked[0].messages)))
    assert set(content_words(chained_answer)) <= seen, asked[0].messages
    assert "capital" in seen, asked[0].messages  # the question, as the chained STT heard it
    assert back.seeded_turns >= 4  # hello + its answer, the question + the chained answer
    answers = call.answers()
    assert set(content_words(REALTIME_REPLY)) <= set(content_words(answers[-1])), answers
    assert chained_answer in answers, answers  # the transcript goes on across the switches
    print(
        f"switch back at load {os.getloadavg()[0]:.1f}: {back_at - away_at} ms after the "
        f"switch away, probes {[(p.outcome.value, p.duration_ms) for p in probes]}"
    )


async def test_failing_probes_keep_the_call_on_chained_until_the_outage_is_over(
    make_speech: Any, loaded_engines: LocalEngines
) -> None:
    lines = [
        make_speech("Hello, I have a question for you.", lead_ms=500, tail_ms=1500),
        make_speech("What is the capital of Italy?", lead_ms=300, tail_ms=1500),
    ]
    async with failover_call(
        lines, loaded_engines, script=[REALTIME_REPLY], failover=BACK, server_hears=False
    ) as call:
        assert call.server is not None
        await _first_realtime_turn_then_quota(call)
        for _ in range(1_000):  # the outage goes on: every handshake is refused
            call.server.arm(RefuseNextConnection())
        refused = lambda: [p for p in call.brain.probes if p.outcome is ProbeOutcome.REFUSED]  # noqa: E731
        await call.until(lambda: len(refused()) >= 4, 90, "four refused probes")
        assert len(call.brain.switched) == 1  # still on chained, past the cooldown
        assert call.brain.policy.brain is Brain.CHAINED
        call.caller.cue()  # the call goes on on the chained brain meanwhile
        await call.until(
            lambda: any(a != REALTIME_REPLY for a in call.answers()), 180, "the chained answer"
        )
        assert len(call.brain.switched) == 1
        cleared_at = call.caller.clock.now_ms()
        call.server.faults.disarm(RefuseNextConnection)  # the outage is over
        await call.until(lambda: len(call.brain.switched) >= 2, 90, "the switch back")
        probes = list(call.brain.probes)

    back = call.brain.switched[1]
    assert back.current is Brain.REALTIME
    assert not call.brain.failed_returns
    # Only two healthy probes in a row after the outage brought it back, never a refused one.
    healthy = [p for p in probes if p.outcome is ProbeOutcome.HEALTHY]
    assert len(healthy) >= 2
    last_refused = max(i for i, p in enumerate(probes) if p.outcome is ProbeOutcome.REFUSED)
    assert all(p.outcome is ProbeOutcome.HEALTHY for p in probes[last_refused + 1 :])
    assert call.brain.policy.switches[-1].at_ms > cleared_at
    print(
        f"failing probes at load {os.getloadavg()[0]:.1f}: "
        f"{len(probes) - len(healthy)} refused, {len(healthy)} healthy before the switch back"
    )


# How late the chained VAD reads the caller in the test below: long enough for the
# caller's first words ("What is the") to go to the chained brain before the switch.
VAD_LAG_S = 0.7


async def test_words_the_caller_began_as_the_call_switched_back_reach_the_realtime_brain(
    make_speech: Any, loaded_engines: LocalEngines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch back comes at a turn boundary the chained VAD reports; on a loaded
    machine that VAD reads the caller late, so the caller may already be speaking. Here
    the caller starts at the switch back's decision and the switch is carried out
    ``VAD_LAG_S`` later: before, the realtime brain heard the question without its
    opening words (the chained brain had them, and no longer the call)."""
    question = "What is the capital of Italy?"
    lines = [
        make_speech("Hello, I have a question for you.", lead_ms=500, tail_ms=1500),
        make_speech(question, lead_ms=100, tail_ms=1500),
    ]
    async with failover_call(
        lines, loaded_engines, script=[REALTIME_REPLY], failover=BACK, server_hears=False
    ) as call:
        switch_back = call.brain._to_realtime

        async def read_late(switch: Any) -> None:
            call.caller.cue()  # the caller begins to speak...
            await asyncio.sleep(VAD_LAG_S)  # ...while the switch back is under way
            await switch_back(switch)

        monkeypatch.setattr(call.brain, "_to_realtime", read_late)
        await _first_realtime_turn_then_quota(call)
        assert call.realtime_brain is not None
        turns_before = len(call.realtime_brain.turn_audio)
        await call.until(lambda: len(call.brain.switched) >= 2, 90, "the switch back")
        await call.until(
            lambda: len(call.realtime_brain.turn_audio) > turns_before,  # type: ignore[union-attr]
            60,
            "the question committed on the realtime brain",
        )

    assert call.brain.switched[1].current is Brain.REALTIME
    pcm, rate = call.realtime_brain.turn_audio[turns_before]
    heard = loaded_engines.stt.transcribe(pcm, rate)
    # The whole question, its first words too (a cut onset loses "What is the").
    assert normalise(heard).split()[:2] == ["what", "is"], heard
    assert word_error_rate(question, heard) <= 0.2, heard
    assert call.brain.opening_ms and call.brain.opening_ms[-1] > 0  # handed to realtime
    print(
        f"opening words at load {os.getloadavg()[0]:.1f}: {call.brain.opening_ms[-1]} ms "
        f"handed to realtime; it heard {heard!r}"
    )
