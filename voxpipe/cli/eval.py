"""``voxpipe eval``: synthetic calls from scenario files, graded offline.

Each scenario (YAML, pipecat's scripted format plus voxpipe's keys; see
``voxpipe.evals.scenario``) is played as a call: the caller's lines spoken by
the local TTS (or its recordings), barge-ins keyed to the bot's audio, or a
simulated caller (``persona:``/``goal:``) played by an LLM (the local model,
or OpenAI's chat with OPENAI_API_KEY) and spoken by the same voice, into
the realtime brain (``--server``, OpenAI with a key, or the in-process
server: the scenario's scripted brain, or ``--brain local``) or the chained
brain. Graders judge tool calls, the bot's transcript, latency measured from
the audio, barge-ins (the bot stopped; the truncated context holds what the
caller heard), guardrail trips and cost. Writes ``OUT/results.jsonl``, one
``results.jsonl`` per scenario, each call's artifacts and ``OUT/eval.html``.
Exit code 0 when the pass rate reaches ``--min-pass-rate``, 1 below it, 2 on
bad input.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voxpipe.cli import summary


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help=summary("eval"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenarios", nargs="+", type=Path, help="scenario files or directories")
    parser.add_argument("--mode", choices=["realtime", "chained", "both"], default="realtime")
    parser.add_argument("--server", default=None, help="Realtime endpoint (ws://.../v1/realtime)")
    parser.add_argument("--api-key", default=None, help="key for --server (default: none)")
    parser.add_argument("--config", type=Path, default=None, help="agent.toml for every scenario")
    parser.add_argument(
        "--brain",
        choices=["scripted", "local"],
        default="scripted",
        help="brain of the in-process server: the scenario's script, or the local engines",
    )
    parser.add_argument("--repeat", type=_positive, default=1, help="calls per scenario and mode")
    parser.add_argument(
        "--min-pass-rate",
        type=_rate,
        default=1.0,
        help="exit 1 when fewer calls than this share pass (default 1.0)",
    )
    parser.add_argument("--out", type=Path, default=Path("eval-output"), help="output directory")
    parser.add_argument(
        "--judge",
        default=None,
        help="LLM judge for eval:/success: criteria: 'openai' (the default with "
        "OPENAI_API_KEY set) or module:factory",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voxpipe.evals.results import pass_rate
    from voxpipe.evals.scenario import load_scenarios
    from voxpipe.pipelines.eval_run import EvalOptions, run_suite
    from voxpipe.pipelines.simulated_call import Mode

    # Every file is read and checked before the first call runs: a typo costs nothing.
    scenarios = [s for path in args.scenarios for s in load_scenarios(path)]
    modes = (Mode.REALTIME, Mode.CHAINED) if args.mode == "both" else (Mode(args.mode),)
    options = EvalOptions(
        out_dir=args.out,
        modes=modes,
        repeat=args.repeat,
        server_url=args.server,
        api_key=args.api_key,
        config=args.config,
        brain=args.brain,
        judge=_judge(args.judge),
        on_verdict=_print_progress,
    )
    if args.config is not None:
        from voxpipe.guardrails.config import load_agent_file

        load_agent_file(args.config)
    verdicts = asyncio.run(run_suite(scenarios, options))
    write_results(verdicts, args.out)
    print_summary(verdicts, args.out, args.mode == "both")
    rate = pass_rate(verdicts)
    print(
        f"pass rate {rate:.0%} ({sum(v.passed for v in verdicts)}/{len(verdicts)} calls), "
        f"minimum {args.min_pass_rate:.0%}"
    )
    return 0 if rate >= args.min_pass_rate else 1


def write_results(verdicts: Sequence[Any], out: Path) -> None:
    """``OUT/results.jsonl``, ``OUT/<scenario>/results.jsonl`` and ``OUT/eval.html``."""
    from voxpipe.evals.html import render
    from voxpipe.evals.results import jsonl

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text(jsonl(verdicts))
    for directory in {v.call_dir.parent for v in verdicts}:
        mine = [v for v in verdicts if v.call_dir.parent == directory]
        (directory / "results.jsonl").write_text(jsonl(mine))
    (out / "eval.html").write_text(render(verdicts, out))


def _judge(spec: str | None) -> Any:
    """``--judge``; without one, OpenAI's chat model when ``OPENAI_API_KEY`` is set."""
    import os

    from voxpipe.evals.judge import load_judge

    if spec:
        return load_judge(spec)
    return load_judge("openai") if os.environ.get("OPENAI_API_KEY") else None


def _print_progress(verdict: Any) -> None:
    word = "pass" if verdict.passed else "FAIL"
    print(f"{word}  {verdict.scenario} ({verdict.mode} #{verdict.attempt})", flush=True)


def print_summary(verdicts: Sequence[Any], out: Path, side_by_side: bool) -> None:
    """A rich table: per scenario, the pass rate per mode (side by side with --mode both)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from voxpipe.evals.results import summarise

    summaries = summarise(verdicts)
    modes = list(dict.fromkeys(s.mode for s in summaries))
    table = Table(title="voxpipe eval")
    table.add_column("scenario")
    for mode in modes:
        table.add_column(mode if side_by_side else "passed")
    table.add_column("first failure (turn: evidence)")
    for name in dict.fromkeys(s.scenario for s in summaries):
        cells, failure = [], ""
        for mode in modes:
            found = next((s for s in summaries if (s.scenario, s.mode) == (name, mode)), None)
            cells.append("-" if found is None else f"{found.passed}/{found.calls}")
            if found is not None and found.worst is not None and not failure:
                worst = found.worst
                failure = f"{worst.kind.value} t{worst.turn or '-'}: {worst.evidence}"
        table.add_row(escape(name), *cells, escape(failure[:160]))
    console = Console()
    console.print(table)
    console.print(f"results: {out / 'results.jsonl'}; report: {out / 'eval.html'}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value
