"""Session rollover with a short cap: new sessions, seeded, and no user turn lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realtime_calls import compose, realtime_call

from voxpipe.call import CallState, RolloverConfig, RolloverReason
from voxpipe.processors.realtime import ResponseCreated, RolledOver

QUESTIONS = [
    300,
    "What time do you open on Saturday?",
    2500,
    "Do you sell sun cream?",
    2500,
    "Can I pay by card?",
    3000,
]


async def test_rollover_before_the_cap_keeps_every_user_turn(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    spans = compose(make_speech, QUESTIONS, recording)
    # Roll between turns once a session is 2.5 s old; force it at 4.5 s even if
    # the caller is talking (their audio is held and replayed).
    cap = RolloverConfig(
        session_cap_ms=5_000, margin_ms=2_500, force_margin_ms=500, keep_verbatim_turns=2
    )
    async with realtime_call(recording, script=["Sure, noted."], rollover=cap) as call:
        await call.input_done()
        await call.wait_event(ResponseCreated, len(spans), timeout_s=15)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)

    rolled = call.of(RolledOver)
    assert len(rolled) >= 2
    assert {r.reason for r in rolled} <= {RolloverReason.SESSION_AGE, RolloverReason.FORCED}
    assert all(r.switch_ms < 1_000 for r in rolled)  # loopback: the switch is quick
    assert any(r.seeded_turns > 0 for r in rolled)  # later sessions start with the past
    # Every question was committed and answered, across the sessions.
    assert call.service.call.record.user_turns_committed == len(spans)
    assert len(call.of(ResponseCreated)) == len(spans)
    assert call.service.call.relay.stats().dropped_ms == 0
    assert not call.recorder.errors


async def test_pruning_replaces_old_items_with_a_summary_in_the_live_session(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    spans = compose(make_speech, QUESTIONS, recording)
    prune = RolloverConfig(prune_every_turns=2, keep_verbatim_turns=1)
    async with realtime_call(recording, script=["Sure, noted."], rollover=prune) as call:
        await call.input_done()
        await call.wait_event(ResponseCreated, len(spans), timeout_s=15)
        await call.wait_for(lambda: call.service.machine.state is CallState.LISTENING, 10)
        session = next(iter(call.server.server.live_sessions))
        items = [r.item for r in session.core.conversation.records()]
        instructions = session.core.config.instructions

    assert call.service.call.record.items_pruned >= 1  # at least the first question's audio item
    assert "Summary of the conversation so far" in instructions
    users = [i for i in items if i.type == "message" and i.role == "user"]
    assert len(users) < len(spans)  # old audio no longer re-read by every response
    assert not call.of(RolledOver)  # pruning alone: one session
    assert not call.recorder.errors  # every delete named a live item
