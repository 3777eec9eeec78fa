"""A call with a fallback whose realtime brain is unreachable from the start.

The realtime endpoint refuses every connection; the call's small retry budget
(``FailoverConfig.reconnects``) is spent at once and the chained brain (real
local models) takes the call before the caller speaks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from failover_calls import API_KEY, closed_port_url, failover_call
from realtime_calls import compose

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


def test_voxpipe_call_with_a_fallback_survives_a_provider_that_never_answers(
    make_speech: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """The issue's first case, end to end: without --fallback this call exits 1 (see
    test_realtime_call.py); with it the chained brain answers both questions."""
    from voxpipe.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    recording = tmp_path / "caller.wav"
    # Gaps longer than an answer takes at load 9, so neither question cuts an answer.
    compose(
        make_speech,
        [500, "What is the capital of France?", 25_000, "What is the capital of Italy?", 25_000],
        recording,
    )
    out = tmp_path / "out"
    args = ["call", "--input", str(recording), "--out", str(out), "--api-key", API_KEY]
    assert main([*args, "--server", closed_port_url(), "--fallback", "chained"]) == 0
    assert "brain_switched" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    [switch] = report["brains"]["switches"]
    assert (switch["from"], switch["to"], switch["reason"]) == (
        "realtime",
        "chained",
        "recovery_exhausted",
    )
    assert report["brains"]["time_ms"]["chained"] > 40_000
    messages = json.loads((out / "transcript.json").read_text())["messages"]
    asked = " ".join(str(m["content"]).lower() for m in messages if m["role"] == "user")
    replies = " ".join(str(m["content"]).lower() for m in messages if m["role"] == "assistant")
    assert "france" in asked and "italy" in asked, messages
    # Both answered: at load 12 the first answer once came after the second question,
    # and one reply answered both; the recording's gaps cannot wait for the model.
    assert "paris" in replies and "rome" in replies, messages
    lines = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines].count("brain_switched") == 1
    assert not [line for line in lines if line["type"] == "error" and line.get("fatal")]
