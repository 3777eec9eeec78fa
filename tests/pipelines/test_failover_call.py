"""A call with a fallback whose realtime brain is unreachable from the start.

The realtime endpoint refuses every connection; the call's small retry budget
(``FailoverConfig.reconnects``) is spent at once and the chained brain (real
local models) takes the call before the caller speaks.
"""

from __future__ import annotations

from typing import Any

import pytest
from failover_calls import failover_call

from voxpipe.call.events import BrainGaveUp, Reconnecting
from voxpipe.call.failover import Brain, SwitchReason
from voxpipe.call.state import CallState
from voxpipe.engines import LocalEngines
from voxpipe.errors import RetryBudgetExhaustedError

pytestmark = pytest.mark.models


async def test_connection_refused_at_start_runs_chained_from_the_start(
    make_speech: Any, loaded_engines: LocalEngines
) -> None:
    lines = [
        make_speech("What is the capital of France?", lead_ms=500, tail_ms=1500),
        make_speech("What is the capital of Italy?", lead_ms=300, tail_ms=1500),
    ]
    async with failover_call(lines, loaded_engines, refused=True) as call:
        await call.until(lambda: bool(call.brain.switched), 20, "the switch")
        await call.until(lambda: len(call.answers()) >= 1, 120, "the first answer")
        call.caller.cue()
        await call.until(lambda: len(call.answers()) >= 2, 120, "the second answer")

    switch = call.brain.switched[0]
    assert (switch.previous, switch.current) == (Brain.REALTIME, Brain.CHAINED)
    assert switch.reason is SwitchReason.RECOVERY_EXHAUSTED
    assert not switch.reasked  # nobody had asked anything yet
    assert len(call.of(Reconnecting)) == 1  # one retry, then the switch
    gave_up = call.of(BrainGaveUp)
    assert len(gave_up) == 1 and isinstance(gave_up[0].error, RetryBudgetExhaustedError)
    first, second = call.answers()[:2]
    assert "paris" in first.lower() and "rome" in second.lower(), call.answers()
    assert call.service.machine.state is CallState.ENDED  # it let go, then hung up
