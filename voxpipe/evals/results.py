"""Verdicts: one per call, pass rates per scenario and mode, and the ``results.jsonl`` rows.

A call passes when no check failed; a check that could not be graded
(``passed`` None, say a judge criterion with no ``--judge``) neither passes
nor fails it, and is listed. The run's pass rate is over calls, so
``--repeat 3`` of a flaky scenario shows 2/3, not a coin toss.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxpipe.evals.graders import Check


@dataclass(frozen=True)
class CallVerdict:
    scenario: str
    mode: str
    attempt: int
    checks: tuple[Check, ...]
    call_dir: Path

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        return not self.failures

    def row(self) -> dict[str, Any]:
        """The ``results.jsonl`` line: the verdict, the first failure's kind, turn and evidence."""
        first = self.failures[0] if self.failures else None
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "attempt": self.attempt,
            "verdict": "pass" if self.passed else "fail",
            "failing_kind": first.kind.value if first else None,
            "failing_turn": first.turn if first else None,
            "evidence": first.evidence if first else None,
            "checks": [c.as_dict() for c in self.checks],
            "artifacts": str(self.call_dir),
        }


@dataclass(frozen=True)
class ScenarioSummary:
    scenario: str
    mode: str
    calls: int
    passed: int
    worst: Check | None  # the first failure of the first failing call

    @property
    def pass_rate(self) -> float:
        return self.passed / self.calls if self.calls else 0.0


def summarise(verdicts: Sequence[CallVerdict]) -> list[ScenarioSummary]:
    """Pass counts per (scenario, mode), in the order the scenarios ran."""
    keys: list[tuple[str, str]] = []
    for v in verdicts:
        if (v.scenario, v.mode) not in keys:
            keys.append((v.scenario, v.mode))
    summaries = []
    for scenario, mode in keys:
        runs = [v for v in verdicts if (v.scenario, v.mode) == (scenario, mode)]
        failing = next((v.failures[0] for v in runs if v.failures), None)
        summaries.append(
            ScenarioSummary(scenario, mode, len(runs), sum(v.passed for v in runs), failing)
        )
    return summaries


def pass_rate(verdicts: Sequence[CallVerdict]) -> float:
    """Calls passed over calls run (0 when nothing ran)."""
    return sum(v.passed for v in verdicts) / len(verdicts) if verdicts else 0.0


def jsonl(verdicts: Sequence[CallVerdict]) -> str:
    return "".join(json.dumps(v.row()) + "\n" for v in verdicts)
