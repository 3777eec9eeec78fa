"""``voxpipe eval`` end to end: real calls through voxpipe's own Realtime server (scripted brain).

The caller's lines are spoken by the local TTS and played paced; every grader
reads the call's artifacts. Each grader's failing case here is made by the
call itself (a lying playback report, the server's stall fault, a brain that
calls the wrong tool), not by editing its record.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voxpipe.cli.eval import write_results
from voxpipe.evals.caller import CallerCues
from voxpipe.evals.graders import CheckKind, grade
from voxpipe.evals.record import load_record
from voxpipe.evals.results import CallVerdict
from voxpipe.evals.scenario import load_scenarios
from voxpipe.pipelines.eval_run import EvalOptions, run_suite
from voxpipe.transports.eval_caller import EvalCaller

SUITE = Path(__file__).resolve().parents[2] / "evals"
ARTIFACTS = ("call.wav", "transcript.json", "timeline.jsonl", "report.json", "report.html")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Sockets may reach loopback only; every other attempt is refused and noted."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        inet = self.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not ipaddress.ip_address(address[0]).is_loopback:
            attempts.append(address)
            raise ConnectionRefusedError(f"test: no network beyond loopback ({address})")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1"):
            attempts.append(host)
            raise socket.gaierror(f"test: no name lookups ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield attempts


def _signature(verdicts: list[CallVerdict]) -> list[Any]:
    return [
        (v.scenario, v.mode, [(c.kind, c.turn, c.where, c.passed) for c in v.checks])
        for v in verdicts
    ]


def _explain(verdicts: list[CallVerdict]) -> str:
    return "\n".join(
        f"{v.scenario}: {c.kind.value} t{c.turn} {c.passed} {c.evidence}"
        for v in verdicts
        for c in v.checks
    )


async def test_the_shipped_suite_passes_offline_and_twice_alike(
    tmp_path: Path, loopback_only: list[Any]
) -> None:
    scenarios = load_scenarios(SUITE)
    assert {s.name for s in scenarios} == {
        "pharmacy_hours/saturday",
        "barge_in/cut_the_long_answer",
        "guardrail/unsafe_dose_advice",
        "refusal/no_booking_tool",
    }
    first = await run_suite(scenarios, EvalOptions(out_dir=tmp_path / "one"))
    assert all(v.passed for v in first), _explain(first)
    kinds = {c.kind for v in first for c in v.checks if c.passed}
    assert {CheckKind.TOOL_CALLS, CheckKind.TEXT, CheckKind.LATENCY, CheckKind.BARGE_IN} <= kinds
    assert CheckKind.GUARDRAIL in kinds
    assert not [c for v in first for c in v.checks if c.passed is None], _explain(first)
    assert loopback_only == []  # nothing tried to leave the machine

    write_results(first, tmp_path / "one")
    rows = [json.loads(line) for line in (tmp_path / "one/results.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["pass"] * 4
    page = (tmp_path / "one/eval.html").read_text()
    assert all(s.name in page for s in scenarios) and "100% of 4 calls passed" in page
    for verdict, scenario in zip(first, scenarios, strict=True):
        assert all((verdict.call_dir / name).is_file() for name in ARTIFACTS)
        assert (verdict.call_dir.parent / "results.jsonl").is_file()
        # Graded again from the files alone: the same checks, evidence and all.
        assert grade(scenario, load_record(verdict.call_dir)) == list(verdict.checks)

    second = await run_suite(scenarios, EvalOptions(out_dir=tmp_path / "two"))
    assert _signature(second) == _signature(first), _explain(second)


class _AheadSink:
    """Passes playback reports on, claiming each chunk began 1.5 s early and played twice as long.

    The ledger then places the cut 1.5 s past what the caller heard (its position
    runs on the reported clock and is capped by the audio reported played).
    """

    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        self._sink.chunk_started(duration_ms * 2, now_ms - 1500)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


class LyingCaller(EvalCaller):
    """An eval caller whose output tells the call it played more than the caller heard."""

    def __init__(self, lines: Any, cues: CallerCues, **kwargs: Any) -> None:
        super().__init__(lines, cues, **kwargs)
        output = self.output()
        honest = output.report_playback_to
        output.report_playback_to = lambda sink: honest(_AheadSink(sink))  # type: ignore[method-assign]


# The shipped barge-in, with the reply streamed 4x real time: the server holds all of it
# when the caller cuts in, so a truncation past the heard words is not capped by it.
BARGE_IN_FAST = (
    (SUITE / "barge_in.yaml")
    .read_text()
    .replace("pace: 1.2", "pace: 4")
    .replace("agent: agent.toml", f"agent: {SUITE / 'agent.toml'}")
)


async def test_a_truncation_past_what_was_heard_fails_the_barge_in(
    tmp_path: Path, loopback_only: list[Any]
) -> None:
    path = tmp_path / "barge_in.yaml"
    path.write_text(BARGE_IN_FAST)
    (verdict,) = await run_suite(
        load_scenarios(path), EvalOptions(out_dir=tmp_path / "lying", caller_factory=LyingCaller)
    )
    truncation = [
        c for c in verdict.checks if c.kind is CheckKind.BARGE_IN and "kept" in c.evidence
    ]
    assert len(truncation) == 1 and truncation[0].passed is False, _explain([verdict])
    heard = int(truncation[0].evidence.split("heard ")[1].split()[0])
    kept = int(truncation[0].evidence.split("kept ")[1].split(":")[0])
    assert kept > heard + 1  # the context holds words the caller never heard
    assert not verdict.passed and verdict.row()["failing_kind"] == "barge_in"
    # The same scenario with an honest caller passes: the lie is what failed it.
    (honest,) = await run_suite(load_scenarios(path), EvalOptions(out_dir=tmp_path / "honest"))
    assert honest.passed, _explain([honest])


STALL = """
name: stall
server_faults: [{kind: stall, seconds: 5}]
brain:
  script: ["On Saturday we are open from nine in the morning until one in the afternoon."]
scenarios:
  - name: stalled_reply
    turns:
      - user: "What time do you open on Saturday?"
        expect:
          - event: response
            text_contains: one in the afternoon
            max_gap_ms: 2500
"""

WRONG_TOOLS = """
name: wrong_tools
brain:
  script:
    - function_call: {name: get_opening_hours, arguments: {day: Sunday}}
    - "On Sunday we are closed."
    - function_call: {name: get_weather, arguments: {city: Paris}}
    - "It is sunny in Paris."
scenarios:
  - name: sunday_for_saturday
    turns:
      - user: "What time do you open on Saturday?"
        expect:
          - event: function_call
            calls: [{name: get_opening_hours, args: {day: saturday}}]
      - user: "Can you book me a doctor?"
        expect:
          - event: function_call
            calls: []
"""


async def test_a_stalled_reply_fails_its_gap_limit(
    tmp_path: Path, loopback_only: list[Any]
) -> None:
    path = tmp_path / "stall.yaml"
    path.write_text(STALL)
    (verdict,) = await run_suite(load_scenarios(path), EvalOptions(out_dir=tmp_path / "out"))
    latency = [c for c in verdict.checks if c.kind is CheckKind.LATENCY]
    first_audio, gap = latency
    assert first_audio.passed is True  # the stall comes after the first audio ...
    assert gap.passed is False, _explain([verdict])  # ... and the caller waited in silence
    silence_ms = int(gap.evidence.split("reply ")[1].split(" ms")[0])
    assert 2500 < silence_ms < 9000
    text = next(c for c in verdict.checks if c.kind is CheckKind.TEXT)
    assert text.passed is True  # the reply came in the end


async def test_a_wrong_argument_and_a_forbidden_call_fail(
    tmp_path: Path, loopback_only: list[Any]
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(WRONG_TOOLS)
    (verdict,) = await run_suite(load_scenarios(path), EvalOptions(out_dir=tmp_path / "out"))
    tools = [
        (c.turn, c.passed, c.evidence) for c in verdict.checks if c.kind is CheckKind.TOOL_CALLS
    ]
    assert [(turn, passed) for turn, passed, _ in tools] == [(1, False), (2, False)], tools
    assert "get_opening_hours({'day': 'Sunday'})" in tools[0][2]
    assert "get_weather({'city': 'Paris'})" in tools[1][2]


PIPECAT_FORMAT = """
name: greeting
user:
  modality: audio
  speech: {service: kokoro, voice: af_heart}
judge:
  modality: audio
  transcription: {service: whisper}
stop_on_failure: true
scenarios:
  - name: hello
    turns:
      - user: "Hello there, is this the pharmacy?"
        expect:
          - event: user_started_speaking
          - event: bot_started_speaking
            within_ms: 10000
          - event: response
            text_contains: "how can I help you"
            text_excludes: "goodbye"
"""

TWO_OUTCOMES = """
name: outcomes
brain:
  script: ["Yes, we are open."]
scenarios:
  - name: passes
    turns:
      - user: "Are you open?"
        expect: [{event: response, text_contains: open}]
  - name: fails
    turns:
      - user: "Are you open?"
        expect: [{event: response, text_contains: closed}]
"""


async def test_a_pipecat_format_scenario_runs_unchanged(
    tmp_path: Path, loopback_only: list[Any]
) -> None:
    path = tmp_path / "greeting.yaml"
    path.write_text(PIPECAT_FORMAT)
    from pipecat.evals.scenario import EvalScenarioFile

    pipecats = [s.name for s in EvalScenarioFile.load(path).scenarios]  # pipecat's own parser
    (verdict,) = await run_suite(load_scenarios(path), EvalOptions(out_dir=tmp_path / "out"))
    assert [verdict.scenario] == pipecats == ["greeting/hello"]
    assert [c.kind for c in verdict.checks] == [
        CheckKind.EVENT,
        CheckKind.EVENT,
        CheckKind.LATENCY,
        CheckKind.TEXT,
        CheckKind.TEXT,
    ]
    assert verdict.passed, _explain([verdict])


def _voxpipe_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxpipe", "eval", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**_env(), "OPENAI_API_KEY": ""},
    )


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_repeat_reports_a_pass_rate_and_min_pass_rate_sets_the_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.yaml"
    path.write_text(TWO_OUTCOMES)
    out = tmp_path / "out"
    half = _voxpipe_eval(str(path), "--repeat", "3", "--min-pass-rate", "0.5", "--out", str(out))
    assert half.returncode == 0, half.stderr[-2000:]
    assert "pass rate 50% (3/6 calls)" in half.stdout
    assert "3/3" in half.stdout and "0/3" in half.stdout  # per scenario, over the repeats
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["scenario"], r["attempt"], r["verdict"]) for r in rows) == [
        *[("outcomes/fails", n, "fail") for n in (1, 2, 3)],
        *[("outcomes/passes", n, "pass") for n in (1, 2, 3)],
    ]
    assert {r["failing_kind"] for r in rows if r["verdict"] == "fail"} == {"text"}
    strict = _voxpipe_eval(str(path), "--min-pass-rate", "0.6", "--out", str(tmp_path / "o2"))
    assert strict.returncode == 1, strict.stderr[-2000:]
    assert "pass rate 50% (1/2 calls), minimum 60%" in strict.stdout


def test_a_bad_scenario_file_stops_before_any_call(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.yaml", tmp_path / "b.yaml"
    good.write_text(TWO_OUTCOMES)
    bad.write_text("scenarios:\n  - name: x\n    turns:\n      - user: hi\n        expect: 5\n")
    result = _voxpipe_eval(str(good), str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{bad}: scenarios[0].turns[0].expect: must be a list" in result.stderr
    assert not (tmp_path / "out").exists()  # no call ran, nothing half-written
