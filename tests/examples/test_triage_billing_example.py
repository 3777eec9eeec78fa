"""examples/triage_billing.py on the realtime path, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from realtime_calls import compose
from test_examples import bot_said, run_example

pytestmark = pytest.mark.models


async def test_the_triage_agent_hands_the_caller_to_billing_who_answers(
    make_speech: Any, tmp_path: Path
) -> None:
    caller = tmp_path / "caller.wav"
    lines = ["Hello, my name is John Smith.", "I have a question about my bill."]
    compose(make_speech, [800, lines[0], 5000, lines[1], 9000], caller)
    printed = await run_example("triage_billing", tmp_path, caller, "--mode", "realtime")
    assert "handoff: triage -> billing (bill)" in printed
    answered = [line.split()[-1] for line in printed.splitlines() if "answered as" in line]
    assert answered[:3] == ["triage", "triage", "billing"], printed  # greeting, transfer, answer
    events = json.loads((tmp_path / "handoffs.json").read_text())
    assert [(e["event"], e["previous"], e["current"]) for e in events] == [
        ("HandoffStarted", "triage", "billing"),
        ("HandoffApplied", "triage", "billing"),
    ]
    said = bot_said(tmp_path)
    assert said[-1].startswith("Billing here."), said
