"""``voxpipe call`` answers "where did the time go and what did it cost" for every call.

A simulated realtime call (file transport, voxpipe's server over loopback,
scripted brain) writes report.json and report.html next to the timeline; the
timeline carries each turn's latency boundaries; the process's metrics get
the same figures.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from metric_samples import sample

from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.simulated_call import CallSpec, Mode, simulate_call
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

KEY = "test-key"
SCRIPT = ["We open at nine on Saturday.", "Yes, we take cards."]


def two_questions(make_speech: Any, path: Path) -> Path:
    rate = 16_000
    pieces = []
    for part in (300, "What time do you open on Saturday?", 4000, "Can I pay by card?", 4000):
        if isinstance(part, int):
            pieces.append(np.zeros(rate * part // 1000, dtype=np.float32))
        else:
            audio, _ = sf.read(str(make_speech(part, lead_ms=0, tail_ms=0)), dtype="float32")
            pieces.append(np.asarray(audio, dtype=np.float32))
    sf.write(str(path), np.concatenate(pieces), rate, subtype="PCM_16")
    return path


async def test_a_simulated_call_writes_its_report_timeline_latency_and_metrics(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = two_questions(make_speech, tmp_path / "caller.wav")
    metrics = VoxpipeMetrics(environment="test", project="report")
    brain = ScriptedBrain(SCRIPT, pace=4.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        spec = CallSpec(
            input_path=recording,
            out_dir=tmp_path / "out",
            mode=Mode.REALTIME,
            server_url=srv.realtime_url,
            api_key=KEY,
            quiet_secs=1.5,
            metrics=metrics,
        )
        result = await simulate_call(spec)

    assert result.instruments is not None and result.report is not None
    report = json.loads((spec.out_dir / "report.json").read_text())
    assert len(report["turns"]) == 2
    for turn in report["turns"]:
        # Realtime with server VAD: the speech end comes from speech_stopped's position.
        assert turn["unknown_segments"] == []
        segments = turn["segments_ms"]
        assert all(segments[s] >= 0 for s in ("inference", "downlink", "playback")), turn
        # Capture is one frame's transit, stamped by the realtime core in whole ms: up
        # to 1 ms early when idle (see test_observability_server_vad for the bounds).
        assert -1 < segments["capture"] < 400, segments
        # Speech end to response holds the server's 500 ms end-of-turn silence; uplink
        # alone shrinks when a frame held up by event-loop lag is caught up.
        assert segments["capture"] + segments["uplink"] > 400, segments

    # Cost: two priced responses, the total is their sum, and the metrics agree.
    cost = report["cost"]
    assert cost["complete"] is True and len(cost["responses"]) == 2
    total = sum(Decimal(r["usd"]) for r in cost["responses"])
    assert Decimal(cost["known_usd"]) == total > 0
    rendered = metrics.render().decode()
    # Prometheus adds floats; the ledger keeps exact decimals.
    exported = sample(rendered, "voxpipe_cost_usd_total", model="gpt-realtime")
    assert exported == pytest.approx(float(total), rel=1e-9)
    assert {r["name"] for r in report["rate_limits"]["low_water"]} == {"requests", "tokens"}

    # The timeline carries each turn's boundaries, as written to timeline.jsonl.
    lines = [json.loads(x) for x in (spec.out_dir / "timeline.jsonl").read_text().splitlines()]
    latency = [x for x in lines if x["type"] == "turn_latency"]
    assert [x["boundaries_ms"] for x in latency] == [t["boundaries_ms"] for t in report["turns"]]
    assert len([x for x in lines if x["type"] == "cost"]) == 2

    page = (spec.out_dir / "report.html").read_text()
    charts = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(charts) == 2
    assert all(base64.b64decode(c).startswith(b"\x89PNG") for c in charts)


def test_voxpipe_call_writes_the_report_and_serves_metrics_while_it_runs(
    make_speech: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    from voxpipe.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    recording = two_questions(make_speech, tmp_path / "caller.wav")
    out = tmp_path / "call"
    args = ["call", "--input", str(recording), "--out", str(out), "--mode", "realtime"]
    assert main([*args, "--brain", "scripted", "--metrics-port", "0"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"metrics: http://127\.0\.0\.1:\d+/metrics", printed)
    assert "report.html" in printed
    report = json.loads((out / "report.json").read_text())
    assert len(report["turns"]) == 2 and report["cost"]["complete"] is True
    assert "data:image/png;base64," in (out / "report.html").read_text()
