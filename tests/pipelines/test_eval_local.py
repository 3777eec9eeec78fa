"""The shipped suite on the local brain: ``voxpipe eval evals/ --brain local``.

The embedded Realtime server answers with the local engines (Whisper, Qwen
0.5B, Piper). Whether a scenario passes is the small model's answer (it says
"9 am", not "nine in the morning"; it may offer to book; it never gives the
dosage advice the guardrail scenario needs), so this asserts what must hold
for any brain: the run completes and writes its results, every scenario has
a verdict with evidence (graded again from the files alike), every line was
said, no call reconnected and no response failed while the local brain
thought, and the checks that do not depend on the model's wording pass: no
guardrail tripped on a benign turn, and when the bot spoke before the caller
gave up waiting (120 s), the barge-in stopped it and the context kept no more
words than the caller heard (counted from ``call.wav`` by the local STT; a
context short of that count is left to the grader's verdict, see below).
No timing is asserted beyond the scenarios' own generous limits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from voxpipe.cli import main
from voxpipe.evals.graders import WORD_SLACK, CheckKind, grade
from voxpipe.evals.record import load_record
from voxpipe.evals.scenario import load_scenarios
from voxpipe.timeline import EventKind

pytestmark = [pytest.mark.models, pytest.mark.timeout(1500)]

SUITE = Path(__file__).resolve().parents[2] / "evals"
ARTIFACTS = (
    "call.wav",
    "transcript.json",
    "timeline.jsonl",
    "report.json",
    "report.html",
    "eval_call.json",
)


def _told(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['scenario']}: {c['kind']} t{c['turn']} {c['passed']} {c['evidence']}"
        for r in rows
        for c in r["checks"]
    )


def _checks(row: dict[str, Any], kind: CheckKind, turn: int) -> list[dict[str, Any]]:
    return [c for c in row["checks"] if c["kind"] == kind.value and c["turn"] == turn]


def test_the_shipped_suite_runs_on_the_local_brain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the in-process server, not OpenAI
    out = tmp_path / "out"
    code = main(["eval", str(SUITE), "--brain", "local", "--out", str(out), "--min-pass-rate", "0"])
    assert code == 0

    scenarios = {s.name: s for s in load_scenarios(SUITE)}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    told = _told(rows)
    assert sorted(r["scenario"] for r in rows) == sorted(scenarios), told
    page = (out / "eval.html").read_text()
    for row in rows:
        scenario = scenarios[row["scenario"]]
        # A verdict with evidence: every check says what it saw, a failure names its check.
        assert row["verdict"] in ("pass", "fail"), told
        assert row["checks"] and all(c["evidence"] for c in row["checks"]), told
        if row["verdict"] == "fail":
            assert row["failing_kind"] and row["evidence"], told
        assert row["scenario"] in page
        call_dir = Path(row["artifacts"])
        assert all((call_dir / name).is_file() for name in ARTIFACTS), sorted(call_dir.iterdir())
        assert (call_dir.parent / "results.jsonl").is_file()
        record = load_record(call_dir)
        # Graded again from the files alone: the same checks.
        assert [c.as_dict() for c in grade(scenario, record)] == row["checks"], told
        # Every line was said; the call held its one session and no response failed (the
        # local brain was held to OpenAI's limits: an 8 s silence read as a dead socket,
        # the server failed a reply silent for 30 s; now they outlast the caller's wait).
        assert len(record.lines) == len(scenario.turns), told
        kinds = {e.kind for e in record.events}
        assert EventKind.RECONNECT not in kinds, f"{row['scenario']} reconnected\n{told}"
        failed = [e for e in record.events if e.kind is EventKind.ERROR]
        assert not [e for e in failed if "generating the response" in str(e.data)], failed

    by_name = {r["scenario"]: r for r in rows}
    barge_row = by_name["barge_in/cut_the_long_answer"]
    barge = _checks(barge_row, CheckKind.BARGE_IN, 2)
    first_answer = _checks(barge_row, CheckKind.LATENCY, 1)[0]["evidence"]
    if "never answered" in first_answer:
        # The machine, not the harness: the local LLM took longer than the caller's
        # 120 s to the first words of its reply (llama.cpp at load 15+ on 2 cores), so
        # the caller spoke after the wait, over silence.
        assert [c["evidence"] for c in barge] == ["the bot was not speaking"], told
    else:
        # The barge-in: the bot was cut, stopped within the limit, and its context kept
        # no unheard words (the local STT counted the words that were heard). Only that
        # direction is asserted: the STT's count runs over at the cut, as Whisper completes
        # a word cut mid-way and may go on with the sentence (fc4: kept "I'm sorry, but I
        # don't have", 6 words, at 2028 ms; heard "I'm sorry, but I don't have access to
        # it.", 9), so a context short of it is the grader's verdict to give, not a bug.
        stop, truncation = barge
        assert stop["passed"] is True, told
        assert "local STT heard" in truncation["evidence"], told
        counts = re.search(r"heard (\d+) words.*the context kept (\d+):", truncation["evidence"])
        assert counts is not None, told
        heard, kept = (int(n) for n in counts.groups())
        assert 0 < kept <= heard + WORD_SLACK, told
    # No guardrail trips on a benign question.
    benign = _checks(by_name["pharmacy_hours/saturday"], CheckKind.GUARDRAIL, 1)
    assert [c["passed"] for c in benign] == [True], told
