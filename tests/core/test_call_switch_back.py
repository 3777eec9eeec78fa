"""Switching back from the chained brain: the realtime call takes the call again.

Scripts of ``tests/support/call_script.py``,
plus the chained brain's turn boundary, fed frames' stages with the time.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from call_script import (
    CONNECT,
    SERVER_TURN,
    audio,
    caller_audio,
    describe,
    done,
    event_of,
    new_call,
    opened,
    run,
    session_created,
    session_updated,
    transcribed,
    words,
)

from voxpipe.call import BackoffConfig, CallState, RealtimeCall
from voxpipe.call.commands import Publish, SendEvent
from voxpipe.call.events import BrainGaveUp
from voxpipe.call.failover import parse_fallback_table
from voxpipe.call.recovery import FailureClass, NetworkFailed
from voxpipe.call.rollover import Role, Turn
from voxpipe.call.turn_boundary import BoundaryConfig, ChainedStage, ChainedTurnBoundary
from voxpipe.errors import ConfigError, TransportError

S = CallState
HEARD = [
    Turn(Role.USER, "What is the capital of Italy?"),
    Turn(Role.ASSISTANT, "The capital of Italy is Rome."),
]


def on_fallback(**config: Any) -> RealtimeCall:
    """A call that answered one question on realtime, then moved to the chained brain."""
    call = new_call(fallback=True, **config)
    run([*CONNECT, *SERVER_TURN], call)
    call.server_event(event_of(transcribed("user_1", "Hello there.")), 2030)
    call.server_event(event_of(words("resp_1", "item_1", "Hi, how can I help?")), 2050)
    call.server_event(event_of(audio("resp_1", "item_1", 500)), 2100)
    call.server_event(event_of(done("resp_1", "completed", ("item_1",))), 2200)
    call.user_audio(bytes(4_800), None, 2300)  # held: no session will take it
    call.switch_away(3_000)
    call.handed_over(3_010)
    assert call.machine.state is S.ON_FALLBACK
    return call


def seeded_texts(commands: list[Any]) -> list[tuple[str, str]]:
    out = []
    for c in commands:
        if isinstance(c, SendEvent) and c.event.type == "conversation.item.create":
            item = c.event.item
            out.append((item.role, item.content[0].text))
    return out


def test_switching_back_opens_a_session_seeded_with_what_was_heard_on_both_brains() -> None:
    call = on_fallback()
    got = [describe(c) for c in call.switch_back(HEARD, 60_000, timeout_ms=10_000)]
    assert got == ["state:brain_switching", "open+0"]
    # The caller speaks while the session opens: held, then replayed to it.
    assert [describe(c) for c in caller_audio(100)(call, 60_050)] == []
    run([(60_100, opened(), []), (60_120, session_created(), ["pipecat:session.created"])], call)
    commands = session_updated()(call, 60_200)
    assert seeded_texts(commands) == [
        ("user", "Hello there."),
        ("assistant", "Hi, how can I help?"),
        ("user", "What is the capital of Italy?"),
        ("assistant", "The capital of Italy is Rome."),
    ]
    described = [describe(c) for c in commands]
    assert "state:listening" in described
    # Only the audio from the switch back on is replayed (the older turn was answered).
    assert described.count("append:replay") == 1
    assert call.machine.state is S.LISTENING
    assert call.seeded_on_return == 4
    assert call.returning_by_ms is None


def test_after_a_switch_back_the_retry_budget_starts_afresh() -> None:
    backoff = BackoffConfig(initial_ms=10, max_ms=10, jitter=0, max_consecutive=1, max_in_window=1)
    call = new_call(fallback=True, backoff=backoff)
    run(CONNECT, call)
    call.connection_failed(NetworkFailed("down"), 100)  # the one reconnect of the budget
    gave_up = call.connection_failed(NetworkFailed("down"), 200)
    assert any(isinstance(c, Publish) and isinstance(c.event, BrainGaveUp) for c in gave_up)
    call.switch_away(210)
    call.handed_over(220)
    call.switch_back([], 70_000, timeout_ms=10_000)
    run([(70_010, opened(), []), (70_020, session_created(), ["pipecat:session.created"])], call)
    session_updated()(call, 70_030)
    assert call.machine.state is S.LISTENING
    # A lost socket now reconnects, as on a fresh call, instead of giving up at once.
    got = [describe(c) for c in call.connection_failed(NetworkFailed("blip"), 80_000)]
    assert got[-1] == "open+10"
    assert call.machine.state is S.RECONNECTING


def test_a_switch_back_whose_connection_fails_leaves_the_call_on_the_fallback() -> None:
    call = on_fallback()
    call.switch_back(HEARD, 60_000, timeout_ms=10_000)
    commands = call.connection_failed(NetworkFailed("refused"), 60_300)
    described = [describe(c) for c in commands]
    assert described == ["close", "state:on_fallback", "event:BrainGaveUp"]
    gave_up = commands[-1]
    assert isinstance(gave_up, Publish) and isinstance(gave_up.event, BrainGaveUp)
    assert gave_up.event.failure_class is FailureClass.TRANSPORT
    assert isinstance(gave_up.event.error, TransportError)
    # The chained turns stay in the record: the next switch back seeds them once.
    call.switch_back([], 90_000, timeout_ms=10_000)
    run([(90_010, opened(), []), (90_020, session_created(), ["pipecat:session.created"])], call)
    texts = [text for _, text in seeded_texts(session_updated()(call, 90_030))]
    assert texts.count("The capital of Italy is Rome.") == 1


def test_a_switch_back_whose_session_never_becomes_ready_times_out() -> None:
    call = on_fallback()
    call.switch_back(HEARD, 60_000, timeout_ms=10_000)
    run([(60_010, opened(), []), (60_020, session_created(), ["pipecat:session.created"])], call)
    assert [describe(c) for c in call.tick(69_000)] == []
    got = [describe(c) for c in call.tick(70_000)]
    assert got == ["close", "state:on_fallback", "event:BrainGaveUp"]
    # A late session.updated of that socket is not a session ready.
    late = [describe(c) for c in session_updated()(call, 70_100)]
    assert "state:listening" not in late
    assert call.machine.state is S.ON_FALLBACK


def test_a_switch_back_only_happens_from_the_fallback() -> None:
    call = run(CONNECT)
    assert [describe(c) for c in call.switch_back(HEARD, 100, timeout_ms=10_000)] == [
        "ignored:not_live"
    ]
    assert call.machine.state is S.LISTENING


def test_a_switch_away_during_a_reconnect_stops_the_reconnect_from_opening() -> None:
    backoff = BackoffConfig(initial_ms=500, max_ms=500, jitter=0, max_consecutive=3)
    call = new_call(fallback=True, backoff=backoff)
    run(CONNECT, call)
    call.connection_failed(NetworkFailed("down"), 100)  # a reconnect is on its way
    got = [describe(c) for c in call.switch_away(150)]
    assert "close" in got  # the driver cancels the connect still on its way


# -- the chained brain's turn boundary ------------------------------------------------


def test_the_chained_brain_is_between_turns_only_after_the_reply_was_heard_and_all_settled() -> (
    None
):
    b = ChainedTurnBoundary(BoundaryConfig(settle_ms=1_000, owed_ms=30_000), now_ms=0)
    assert not b.at_boundary(500)  # not settled yet
    assert b.at_boundary(1_000)
    steps = [
        (2_000, ChainedStage.USER_STARTED),
        (3_000, ChainedStage.USER_STOPPED),  # the STT and the LLM take their time...
        (7_000, ChainedStage.REPLY_STARTED),
        (7_100, ChainedStage.VOICE_STARTED),
        (7_400, ChainedStage.AUDIO_OUT),
        (7_500, ChainedStage.REPLY_ENDED),
        (7_900, ChainedStage.VOICE_STOPPED),  # ...and the audio still has to play
        (8_600, ChainedStage.BOT_STARTED),
    ]
    for now, stage in steps:
        b.saw(stage, now)
        assert not b.at_boundary(now + 1_000), stage
    b.saw(ChainedStage.BOT_STOPPED, 10_000)
    assert not b.at_boundary(10_500)
    assert b.at_boundary(11_000)


def test_a_turn_the_stt_heard_nothing_in_keeps_the_call_busy_no_longer_than_owed_ms() -> None:
    b = ChainedTurnBoundary(BoundaryConfig(settle_ms=1_000, owed_ms=5_000), now_ms=0)
    b.saw(ChainedStage.USER_STARTED, 1_000)
    b.saw(ChainedStage.USER_STOPPED, 2_000)
    assert not b.at_boundary(6_000)
    assert b.at_boundary(7_000)


def test_a_barge_in_drops_the_audio_that_was_on_its_way() -> None:
    b = ChainedTurnBoundary(BoundaryConfig(settle_ms=1_000), now_ms=0)
    b.saw(ChainedStage.REPLY_STARTED, 100)
    b.saw(ChainedStage.AUDIO_OUT, 200)
    b.saw(ChainedStage.USER_STARTED, 300)
    b.saw(ChainedStage.INTERRUPTED, 310)  # no bot-stopped: it had not started playing
    assert b.busy(400)  # the caller speaks
    b.saw(ChainedStage.USER_STOPPED, 1_000)
    b.saw(ChainedStage.REPLY_STARTED, 1_500)
    b.saw(ChainedStage.REPLY_ENDED, 1_600)  # an empty reply: no voice, no audio
    assert b.at_boundary(2_600)


# -- [fallback] in agent.toml ----------------------------------------------------------


def test_the_agent_file_tunes_the_switch_back() -> None:
    table = {"brain": "chained", "switch_back": False, "cooldown_ms": 5_000, "probes_needed": 3}
    config = parse_fallback_table(table, "agent.toml")
    assert config is not None
    assert (config.switch_back, config.cooldown_ms, config.probes_needed) == (False, 5_000, 3)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"switch_back": "yes"}, "[fallback].switch_back"),
        ({"probe_interval_ms": True}, "[fallback].probe_interval_ms"),
        ({"cooldown_ms": 10, "max_cooldown_ms": 5}, "max_cooldown_ms"),
    ],
)
def test_a_bad_switch_back_setting_is_a_config_error_naming_it(
    table: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        parse_fallback_table(table, "agent.toml")
