"""Benchmark ``voxpipe eval`` on the shipped suite: wall time, CPU, and calls graded per minute.

Each run plays every scenario under ``evals/`` as one paced call (in process,
the embedded server's scripted brain by default, ``--brain local`` the local
engines) and grades it. Per run: wall time, the process's CPU time (server,
caller, graph and graders share the process), and the calls' own length on
their clock (the caller's first line to the call's end), which is the
baseline: a paced call cannot be faster than its talk, so ``wall / talk`` is
what the eval machinery adds (start-up, waiting for the brain, the quiet after
the last answer, writing artifacts). Grading alone is timed separately, from
the artifacts, to show it is not what costs. Medians over ``--runs``.

Writes benchmarks/results/eval_suite.json. Run:
``.venv/bin/python benchmarks/eval_suite.py [--runs 3] [--brain scripted|local|both]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import median, print_table, write_result

from voxpipe.evals.graders import grade
from voxpipe.evals.record import load_record
from voxpipe.evals.scenario import load_scenarios
from voxpipe.pipelines.eval_run import EvalOptions, run_suite

SUITE = Path(__file__).resolve().parents[1] / "evals"


async def one_run(brain: str, out: Path) -> dict[str, Any]:
    scenarios = load_scenarios(SUITE)
    load_before = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    verdicts = await run_suite(scenarios, EvalOptions(out_dir=out, brain=brain))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    talk_ms = 0.0
    grade_cpu0 = time.process_time()
    for verdict, scenario in zip(verdicts, scenarios, strict=True):
        record = load_record(verdict.call_dir)
        talk_ms += record.ended_ms - (record.lines[0].start_ms if record.lines else 0.0)
        grade(scenario, record)
    grading = time.process_time() - grade_cpu0
    return {
        "calls": len(verdicts),
        "passed": sum(v.passed for v in verdicts),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "talk_s": round(talk_ms / 1000, 2),
        "wall_over_talk": round(wall / (talk_ms / 1000), 2),
        "calls_per_min": round(len(verdicts) / (wall / 60), 2),
        "cpu_per_call_s": round(cpu / len(verdicts), 2),
        "grading_cpu_ms_per_call": round(grading * 1000 / len(verdicts), 1),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "failures": [
            f"{v.scenario}: {c.kind.value} t{c.turn}: {c.evidence}"
            for v in verdicts
            for c in v.failures
        ],
    }


async def main(runs: int, brains: list[str]) -> None:
    results: dict[str, Any] = {}
    rows = []
    for brain in brains:
        samples = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                samples.append(await one_run(brain, Path(tmp)))
        keys = ("wall_s", "cpu_s", "talk_s", "wall_over_talk", "calls_per_min", "cpu_per_call_s")
        summary = {k: median([s[k] for s in samples]) for k in keys}
        summary["grading_cpu_ms_per_call"] = median([s["grading_cpu_ms_per_call"] for s in samples])
        results[brain] = {"median": summary, "runs": samples}
        loads = [x for s in samples for x in s["load_1m"]]
        rows.append(
            [
                brain,
                f"{sum(s['passed'] for s in samples)}/{sum(s['calls'] for s in samples)}",
                summary["wall_s"],
                summary["talk_s"],
                summary["wall_over_talk"],
                summary["cpu_s"],
                summary["calls_per_min"],
                summary["grading_cpu_ms_per_call"],
                f"{min(loads):.1f}-{max(loads):.1f}",
            ]
        )
    print_table(
        f"voxpipe eval, shipped suite ({runs} runs, medians)",
        [
            "brain",
            "passed",
            "wall s",
            "talk s (baseline)",
            "wall / talk",
            "CPU s",
            "calls / min",
            "grading CPU ms / call",
            "load 1m",
        ],
        rows,
    )
    name = "eval_suite" if brains == ["scripted"] else f"eval_suite_{'_'.join(brains)}"
    print(f"wrote {write_result(name, {'runs': runs, 'results': results})}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--brain", choices=["scripted", "local", "both"], default="scripted", help="whose answers"
    )
    args = parser.parse_args()
    brains = ["scripted", "local"] if args.brain == "both" else [args.brain]
    asyncio.run(main(args.runs, brains))
