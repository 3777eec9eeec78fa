"""``eval.html``: per-scenario rows with pass rates over repeats, every call's checks,
and the worst calls' latency waterfalls (their ``report.html``, embedded)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from voxpipe.evals.results import CallVerdict, pass_rate, summarise

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px}
.pass{color:#176b2c}.fail{color:#b3261e;font-weight:bold}.skip{color:#777}
iframe{width:100%;height:520px;border:1px solid #ccc}
"""


def render(verdicts: Sequence[CallVerdict], out_dir: Path, *, worst: int = 3) -> str:
    """The page, with links relative to ``out_dir`` (where it is written)."""
    rows = "".join(
        f"<tr><td>{_e(s.scenario)}</td><td>{s.mode}</td><td>{s.passed}/{s.calls}</td>"
        f"<td class={'pass' if s.passed == s.calls else 'fail'}>{s.pass_rate:.0%}</td>"
        f"<td>{_e(s.worst.kind.value if s.worst else '')}</td>"
        f"<td>{s.worst.turn if s.worst and s.worst.turn else ''}</td>"
        f"<td>{_e(s.worst.evidence if s.worst else '')}</td></tr>"
        for s in summarise(verdicts)
    )
    calls = "".join(_call(v, out_dir) for v in verdicts)
    failing = sorted((v for v in verdicts if not v.passed), key=lambda v: -len(v.failures))
    embeds = "".join(
        f"<h3>{_e(v.scenario)} ({v.mode} #{v.attempt})</h3>"
        f"<iframe src='{_link(v.call_dir / 'report.html', out_dir)}'></iframe>"
        for v in failing[:worst]
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>voxpipe eval</title><style>{_STYLE}</style>"
        f"<h1>voxpipe eval: {pass_rate(verdicts):.0%} of {len(verdicts)} calls passed</h1>"
        "<table><tr><th>scenario</th><th>mode</th><th>passed</th><th>pass rate</th>"
        f"<th>failing check</th><th>turn</th><th>evidence</th></tr>{rows}</table>"
        "<h2>Calls</h2><table><tr><th>call</th><th>check</th><th>turn</th><th>verdict</th>"
        f"<th>evidence</th></tr>{calls}</table>"
        f"<h2>Worst calls: turn waterfalls</h2>{embeds or '<p>No call failed.</p>'}"
    )


def _call(verdict: CallVerdict, out_dir: Path) -> str:
    link = _link(verdict.call_dir / "report.html", out_dir)
    name = f"<a href='{link}'>{_e(verdict.scenario)} {verdict.mode} #{verdict.attempt}</a>"
    cells = []
    for check in verdict.checks:
        label, css = {True: ("pass", "pass"), False: ("FAIL", "fail"), None: ("n/a", "skip")}[
            check.passed
        ]
        cells.append(
            f"<tr><td>{name}</td><td>{check.kind.value}</td><td>{check.turn or ''}</td>"
            f"<td class={css}>{label}</td><td>{_e(check.evidence)}</td></tr>"
        )
    return "".join(cells) or f"<tr><td>{name}</td><td colspan=4>no checks</td></tr>"


def _link(path: Path, out_dir: Path) -> str:
    return html.escape(os.path.relpath(path, out_dir))


def _e(text: str) -> str:
    return html.escape(text)
