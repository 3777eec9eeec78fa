"""Caller audio across a failed switch back: what the realtime brain never committed is not lost.

The call goes to the chained brain (``insufficient_quota``), comes back to
the realtime brain after healthy probes, and the realtime session fails
again while the caller is mid-question: the audio of the question's first
half went to that session, which never committed it. The chained brain must
hear the whole question, not only what the caller said after the failure.
Real local models on the chained side, voxpipe's server with fault
injection on the realtime side; every wait is on an event or on the audio
the caller has sent.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from failover_calls import failover_call
from hearing import content_words
from test_failover_back import BACK, QUOTA, REALTIME_REPLY, _first_realtime_turn_then_quota

from voxpipe.call.failover import Brain, SwitchReason
from voxpipe.call.state import CallState
from voxpipe.engines import LocalEngines
from voxpipe.transports.realtime_server import RefuseNextConnection

pytestmark = pytest.mark.models

QUESTION = "What is the capital of Italy, please?"
# Piper says "What is the capital" in ~1.1 s of the line's 2.2 s (after a 300 ms lead):
# the fault lands once 1.45 s of the line was sent, after "capital", before "Italy".
CUT_AFTER_MS = 300 + 1_150


async def test_the_question_said_to_a_returned_session_that_fails_reaches_the_chained_brain(
    make_speech: Any, loaded_engines: LocalEngines
) -> None:
    lines = [
        make_speech("Hello, I have a question for you.", lead_ms=500, tail_ms=1500),
        make_speech(QUESTION, lead_ms=300, tail_ms=1500),
    ]
    async with failover_call(
        lines, loaded_engines, script=[REALTIME_REPLY], failover=BACK, server_hears=False
    ) as call:
        assert call.server is not None
        await _first_realtime_turn_then_quota(call)
        await call.until(lambda: len(call.brain.switched) >= 2, 120, "the switch back")
        await call.until(
            lambda: call.service.machine.state is CallState.LISTENING, 30, "realtime listening"
        )
        caller = call.caller
        caller.cue()  # the question, to the realtime brain
        await call.until(lambda: caller.started_ms[1] is not None, 30, "the question to start")
        start = caller.started_ms[1]
        assert start is not None
        await call.until(lambda: caller.sent_ms >= start + CUT_AFTER_MS, 30, "mid-question")
        # The realtime brain fails again, mid-question: quota, and no session after it.
        for _ in range(1_000):
            call.server.arm(RefuseNextConnection())
        call.server.arm(QUOTA)
        await call.until(lambda: len(call.brain.switched) >= 3, 30, "the second switch away")
        await call.until(
            lambda: any(a != REALTIME_REPLY for a in call.answers()), 180, "the chained answer"
        )
        cut_at = call.brain.policy.switches[-1].at_ms
        handed = list(call.brain.handed_audio_ms)
        messages = call.graph.context.get_messages()

    away, back, again = call.brain.switched
    assert (away.current, back.current, again.current) == (
        Brain.CHAINED,
        Brain.REALTIME,
        Brain.CHAINED,
    )
    assert again.reason is SwitchReason.QUOTA_EXHAUSTED
    assert not again.reasked  # the realtime brain owed no answer: the caller was mid-turn
    asked = [str(m.get("content")) for m in messages if m.get("role") == "user"]
    heard = set(content_words(" ".join(asked)))  # the seed's "Hello, ..." has neither word
    # The question's first half ("capital") was said only to the realtime session.
    assert {"capital", "italy"} <= heard, messages
    answer = call.answers()[-1]
    assert "rome" in answer.lower(), messages
    # What the caller had said to the realtime session (uncommitted) went to the chained brain.
    assert handed[-1] >= CUT_AFTER_MS - 300, handed
    print(
        f"hand-back at load {os.getloadavg()[0]:.1f}: {handed[-1]} ms of caller audio handed "
        f"over at the second switch away ({cut_at} ms); the chained STT heard {asked[-1]!r}"
    )
