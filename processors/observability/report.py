"""The per-call report: where the time went and what it cost, in numbers and in a picture.

:func:`write_report` writes ``report.json`` (turns with their latency segments,
per-call spreads, cost with unknowns said so, rate-limit low-water marks) and
``report.html``, a page a person can open, with one latency waterfall per turn
drawn by matplotlib and embedded as a PNG.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxpipe.observability.agent_report import agent_section
from voxpipe.observability.brains import brain_section
from voxpipe.observability.cost import CostLedger
from voxpipe.observability.latency import LatencyBudget, Segment, summarize
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.outcome import call_outcome
from voxpipe.observability.prices import DEFAULT_MODEL
from voxpipe.observability.ratelimits import RateLimitTracker
from voxpipe.observability.slot_report import slot_section
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.processors.observability.instruments import Instruments, instrument
from voxpipe.processors.observability.usage import cost_dict
from voxpipe.timeline import Timeline, Turn
from voxpipe.transports.file import FileTransport

REPORT_VERSION = 1
MAX_CHARTS = 60  # a long call's page stays openable; the JSON keeps every turn
_ORIGINS = (
    "the caller stopped speaking",
    "the turn was sent",
    "the response started",
    "the first audio arrived",
    "the audio reached the output",
    "playback started",
)
_MATCH_MS = 500.0  # a timeline turn's first bot audio this close to a budget's is the same
_COLOURS = {
    Segment.CAPTURE: "#4C72B0",
    Segment.UPLINK: "#55A868",
    Segment.INFERENCE: "#DD8452",
    Segment.DOWNLINK: "#8172B2",
    Segment.PLAYBACK: "#CCB974",
}


@dataclass(frozen=True)
class ReportFiles:
    """Where the report was written."""

    json_path: Path
    html_path: Path


def instrument_call(
    transport: FileTransport,
    graph: VoiceGraph,
    timeline: Timeline,
    *,
    metrics: VoxpipeMetrics | None = None,
    model: str = DEFAULT_MODEL,
    warn_below: float = 0.1,
) -> Instruments:
    """The instruments of a call on the file transport (capture stamps, playback reports).

    When the graph's chained slots are OpenAI's HTTP services, their answers'
    rate-limit headers feed the call's rate-limit tracker too.
    """
    instruments = instrument(
        transport.clock.now_ms,
        brain=graph.brain,
        output=transport.output(),
        input=transport.input(),
        timeline=timeline,
        capture=transport,
        playback=transport,
        metrics=metrics,
        model=model,
        warn_below=warn_below,
    )
    if graph.rate_limit_headers is not None:
        graph.rate_limit_headers.add_listener(instruments.usage.record_http_headers)
    return instruments


def report_call(out_dir: Path, instruments: Instruments) -> ReportFiles:
    """Close the last turn and write the call's report (after the call has ended)."""
    instruments.finish()
    return write_report(
        out_dir,
        instruments.timeline,
        instruments.budgets,
        instruments.ledger,
        instruments.ratelimits,
    )


def write_report(
    out_dir: Path,
    timeline: Timeline,
    budgets: Sequence[LatencyBudget],
    ledger: CostLedger,
    ratelimits: RateLimitTracker,
) -> ReportFiles:
    """Write ``report.json`` and ``report.html`` for one call into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(timeline, budgets, ledger, ratelimits)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(report, budgets))
    return ReportFiles(json_path, html_path)


def build_report(
    timeline: Timeline,
    budgets: Sequence[LatencyBudget],
    ledger: CostLedger,
    ratelimits: RateLimitTracker,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (what ``report.json`` holds)."""
    spoken = timeline.turns()
    turns = []
    for index, b in enumerate(budgets, start=1):
        said = _spoken_turn(b, spoken)
        turns.append(
            {
                "turn": index,
                "heard": said.heard if said else None,
                "replied": said.replied if said else None,
                "interrupted": said.interrupted if said else None,
                # With [delegate]: the budget runs to the first audio, which may be a filler
                # said while the backend worked; these run to the answer and to the filler.
                "answer_latency_ms": _rounded(said.latency_ms) if said else None,
                "filler_latency_ms": _rounded(said.filler_latency_ms) if said else None,
                **b.as_dict(),
                "unknown_segments": [s.value for s, ms in b.segments.items() if ms is None],
            }
        )
    summary = {name: dataclasses.asdict(s) for name, s in summarize(list(budgets)).items()}
    return {
        "version": REPORT_VERSION,
        "outcome": call_outcome(timeline).as_dict(),
        "turns": turns,
        "totals": {
            "turns": len(budgets),
            "skewed_turns": sum(1 for b in budgets if b.skewed),
            "latency_ms": summary,
        },
        "cost": cost_section(ledger),
        "rate_limits": rate_limit_section(ratelimits),
        "brains": brain_section(timeline),
        "slots": slot_section(timeline),
        "agents": agent_section(timeline),
    }


def _spoken_turn(b: LatencyBudget, spoken: Sequence[Turn]) -> Turn | None:
    """The timeline turn this budget measured.

    Matched on the bot's first audio (the timeline's ``first_bot_audio`` is the
    output transport starting to speak), else on the caller's end of speech
    falling inside the budget's turn.
    """
    heard = b.stamps.first_audio_written_ms or b.stamps.playback_ms
    if heard is not None:
        answered = [t for t in spoken if _first_heard(t) is not None]
        nearest = min(answered, key=lambda t: abs((_first_heard(t) or 0) - heard), default=None)
        if nearest is not None and abs((_first_heard(nearest) or 0) - heard) <= _MATCH_MS:
            return nearest
    start = b.stamps.speech_end_ms
    if start is None:
        return None
    for turn in spoken:
        stopped = turn.user_stopped_ms
        if stopped is not None and stopped >= start and (heard is None or stopped <= heard):
            return turn
    return None


def _first_heard(turn: Turn) -> float | None:
    """The turn's first bot audio: a filler's, when one came before the answer."""
    return turn.filler_ms if turn.filler_ms is not None else turn.first_audio_ms


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


def cost_section(ledger: CostLedger) -> dict[str, Any]:
    """The call's cost: known dollars, and what could not be priced, in words too."""
    total = ledger.total
    entries = ledger.entries
    if not entries:
        statement = "unknown: no response reported its usage"
    elif not total.is_complete:
        statement = (
            f"unknown: {total.unknown_responses} of {len(entries)} responses could not be "
            f"priced; the priced part is ${total.known_usd:.6f}"
        )
    else:
        statement = f"${total.known_usd:.6f}"
        if total.upper_bound_responses:
            statement += f" (an upper bound: {total.upper_bound_responses} usages were incomplete)"
    return {
        "statement": statement,
        "complete": bool(entries) and total.is_complete,
        "known_usd": str(total.known_usd),
        "unknown_responses": total.unknown_responses,
        "upper_bound_responses": total.upper_bound_responses,
        "model": ledger.model,
        "price_table": ledger.prices.version,
        "tokens": {k: v for k, v in dataclasses.asdict(ledger.tokens).items() if v},
        "responses": [cost_dict(e) for e in entries],
    }


def rate_limit_section(tracker: RateLimitTracker) -> dict[str, Any]:
    """Each limit's lowest remaining share over the call, and the warning threshold."""
    return {
        "warn_below": tracker.warn_below,
        "ignored_readings": tracker.ignored,
        "low_water": [
            {
                "name": r.name.value,
                "source": r.source.value,
                "limit": r.limit,
                "remaining": r.remaining,
                "fraction": round(r.fraction, 4),
                "reset_s": r.reset_s,
                "at_ms": round(r.at_ms, 1),
                "below_threshold": r.fraction < tracker.warn_below,
            }
            for r in tracker.low_water.values()
        ],
    }


def waterfall_png(b: LatencyBudget, title: str) -> bytes:
    """One turn's waterfall: a bar per segment from where the previous one ended."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    chain = b.stamps.chain()
    known = [ms for ms in chain if ms is not None]
    origin = known[0] if known else 0.0
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=100)
    try:
        rows = list(Segment)
        for row, segment in enumerate(rows):
            start, ms = chain[row], b.segments[segment]
            if ms is None or start is None:
                ax.text(0, row, "  unknown (not measured on this path)", va="center", color="grey")
                continue
            skewed = segment in b.skewed
            left = min(start, start + ms) - origin
            ax.barh(
                row,
                abs(ms),
                left=left,
                color="#d62728" if skewed else _COLOURS[segment],
                hatch="//" if skewed else None,
                edgecolor="black",
                linewidth=0.5,
            )
            note = f" {ms:.0f} ms" + (" (negative: clock skew)" if skewed else "")
            ax.text(left + abs(ms), row, note, va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), [s.value for s in rows])
        ax.set_ylim(len(rows) - 0.4, -0.6)  # first segment on top; every row in view
        if b.first_audio_ms is not None:
            ax.axvline(b.first_audio_ms, color="black", linestyle="--", linewidth=0.8)
            ax.text(b.first_audio_ms, -0.55, " first audio", fontsize=8, va="top")
        span = (known[-1] - origin) if len(known) > 1 else 1.0
        ax.set_xlim(min(0.0, *(ms - origin for ms in known)) if known else 0, span * 1.35 + 1)
        first = next((i for i, ms in enumerate(chain) if ms is not None), 0)
        ax.set_xlabel(f"ms after {_ORIGINS[first]}")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _fmt(ms: float | None) -> str:
    return "unknown" if ms is None else f"{ms:.0f} ms"


def render_html(report: dict[str, Any], budgets: Sequence[LatencyBudget]) -> str:
    """The report as one self-contained HTML page (charts inlined as PNG data URLs)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>voxpipe call report</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        ".unknown{color:#888}.skew{color:#d62728}</style></head><body>",
        "<h1>Call report</h1>",
        _outcome_html(report["outcome"]),
        f"<p><b>Cost:</b> {esc(report['cost']['statement'])}</p>",
        "<h2>Latency over the call</h2><table><tr><th>figure</th><th>measured</th>"
        "<th>unknown</th><th>p50</th><th>p95</th><th>max</th></tr>",
    ]
    for name, s in report["totals"]["latency_ms"].items():
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{s['measured']}</td><td>{s['unknown']}</td>"
            f"<td>{_fmt(s['p50_ms'])}</td><td>{_fmt(s['p95_ms'])}</td><td>{_fmt(s['max_ms'])}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_rate_limits_html(report["rate_limits"]))
    parts.append(_brains_html(report["brains"]))
    parts.append(_slots_html(report["slots"]))
    parts.append(_agents_html(report["agents"]))
    parts.append("<h2>Turns</h2>")
    for turn, b in zip(report["turns"][:MAX_CHARTS], budgets, strict=False):
        parts.append(_turn_html(turn, b))
    if len(budgets) > MAX_CHARTS:
        parts.append(f"<p>{len(budgets) - MAX_CHARTS} more turns are in report.json.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _turn_html(turn: dict[str, Any], b: LatencyBudget) -> str:
    esc = html.escape
    title = (
        f"Turn {turn['turn']}: first audio {_fmt(b.first_audio_ms)}, "
        f"end to end {_fmt(b.end_to_end_ms)}"
    )
    png = base64.b64encode(waterfall_png(b, title)).decode("ascii")
    lines = [f"<h3>{esc(title)}</h3>"]
    if turn["heard"]:
        lines.append(f"<p>Caller: {esc(turn['heard'])}<br>Bot: {esc(turn['replied'] or '')}</p>")
    lines.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{png}'>")
    if turn["unknown_segments"]:
        lines.append(
            f"<p class='unknown'>Not measured here: {esc(', '.join(turn['unknown_segments']))}"
            f"; unattributed time {_fmt(b.unattributed_ms)}.</p>"
        )
    if b.skewed:
        skewed = ", ".join(sorted(s.value for s in b.skewed))
        lines.append(f"<p class='skew'>Negative (clock skew between stamps): {esc(skewed)}</p>")
    return "".join(lines)


def _outcome_html(section: dict[str, Any]) -> str:
    if section["reason"] is None:
        return f"<p><b>Ended:</b> {html.escape(section['end'])}</p>"
    return f"<p class='skew'><b>Ended:</b> {html.escape(section['reason'])}</p>"


def _brains_html(section: dict[str, Any]) -> str:
    if not section["switches"]:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{s['at_ms'] / 1000:.1f} s</td><td>{esc(str(s['from']))}</td>"
        f"<td>{esc(str(s['to']))}</td><td>{esc(str(s['reason']))}</td></tr>"
        for s in section["switches"]
    )
    spent = ", ".join(f"{esc(k)} {v / 1000:.1f} s" for k, v in section["time_ms"].items())
    return (
        "<h2>Brain switches</h2><table><tr><th>at</th><th>from</th><th>to</th>"
        f"<th>reason</th></tr>{rows}</table><p><b>Time on each brain:</b> {spent}</p>"
    )


def _agents_html(section: dict[str, Any]) -> str:
    if not section["handoffs"] and not section["refused_transfers"]:
        return ""
    esc = html.escape

    def cell(value: Any) -> str:
        return "-" if value is None else esc(str(value))

    rows = "".join(
        f"<tr><td>{h['at_ms'] / 1000:.1f} s</td><td>{cell(h['from'])}</td>"
        f"<td>{cell(h['to'])}</td><td>{cell(h['reason'])}</td>"
        f"<td>{cell(h['kept_turns'])} turns, {cell(h['summary_chars'])} summary chars</td>"
        f"<td>{cell(h['wait_ms'])} ms{' (barged in)' if h['barged_in'] else ''}</td></tr>"
        for h in section["handoffs"]
    )
    refused = "".join(
        f"<p class='unknown'>{r['at_ms'] / 1000:.1f} s: agent {cell(r['agent'])} called "
        f"{cell(r['tool'])}, a transfer it does not have (refused)</p>"
        for r in section["refused_transfers"]
    )
    return (
        "<h2>Agent handoffs</h2><table><tr><th>at</th><th>from</th><th>to</th><th>why</th>"
        f"<th>context carried</th><th>until in force</th></tr>{rows}</table>{refused}"
    )


def _slots_html(section: dict[str, Any]) -> str:
    if not section["handoffs"] and not section["failures"]:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{h['at_ms'] / 1000:.1f} s</td><td>{esc(str(h['slot']))}</td>"
        f"<td>{esc(str(h['from']))}</td><td>{esc(str(h['to']))}</td>"
        f"<td>{esc(str(h['reason']))}: {esc(str(h['detail']))}</td></tr>"
        for h in section["handoffs"]
    )
    failed = "".join(
        f"<p class='unknown'>{f['at_ms'] / 1000:.1f} s: {esc(str(f['error']))}</p>"
        for f in section["failures"]
    )
    return (
        "<h2>Engine handoffs (chained slots)</h2><table><tr><th>at</th><th>slot</th>"
        f"<th>from</th><th>to</th><th>why</th></tr>{rows}</table>{failed}"
    )


def _rate_limits_html(section: dict[str, Any]) -> str:
    if not section["low_water"]:
        return "<h2>Rate limits</h2><p class='unknown'>No rate-limit readings in this call.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])} ({html.escape(r['source'])})</td>"
        f"<td>{r['remaining']} / {r['limit']}</td><td>{r['fraction']:.1%}</td>"
        f"<td>{'below' if r['below_threshold'] else 'ok'}</td></tr>"
        for r in section["low_water"]
    )
    return (
        f"<h2>Rate limits (lowest over the call; warning below {section['warn_below']:.0%})</h2>"
        f"<table><tr><th>limit</th><th>remaining</th><th>share</th><th></th></tr>{rows}</table>"
    )
