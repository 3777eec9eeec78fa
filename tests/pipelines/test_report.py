"""The per-call report: report.json a program can read, report.html a person can open."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from metric_samples import sample

from voxpipe.observability import (
    CostLedger,
    RateLimitTracker,
    TurnStamps,
    budget,
)
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.report import write_report
from voxpipe.timeline import EventKind, Timeline

USAGE = {
    "input_tokens": 100,
    "output_tokens": 50,
    "input_token_details": {"audio_tokens": 80, "text_tokens": 20, "cached_tokens": 0},
    "output_token_details": {"audio_tokens": 40, "text_tokens": 10},
}


def a_call() -> Timeline:
    timeline = Timeline()
    timeline.add(1_050.0, EventKind.USER_STOPPED_SPEAKING)
    timeline.add(1_100.0, EventKind.USER_TRANSCRIPT, text="When do you open?")
    timeline.add(1_800.0, EventKind.FIRST_BOT_AUDIO)
    timeline.add(1_900.0, EventKind.ASSISTANT_TEXT, text="At nine.")
    return timeline


def pngs_in(page: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    ]


def test_the_report_has_every_turn_its_segments_cost_and_a_waterfall_per_turn(
    tmp_path: Path,
) -> None:
    from matplotlib import image

    turns = [
        budget(TurnStamps(1_000, 1_200, 1_450, 1_700, 1_710, 1_760)),
        budget(TurnStamps(5_000, 5_150, None, 5_900, 5_905, None)),  # no server stamp, no report
    ]
    ledger = CostLedger()
    ledger.record("resp_1", USAGE)
    limits = RateLimitTracker(warn_below=0.2)
    limits.on_realtime_event(
        {"rate_limits": [{"name": "tokens", "limit": 1000, "remaining": 900, "reset_seconds": 1}]},
        1_450,
    )
    limits.on_realtime_event(
        {"rate_limits": [{"name": "tokens", "limit": 1000, "remaining": 150, "reset_seconds": 2}]},
        5_600,
    )
    files = write_report(tmp_path, a_call(), turns, ledger, limits)

    report = json.loads(files.json_path.read_text())
    first, second = report["turns"]
    assert first["heard"] == "When do you open?" and first["replied"] == "At nine."
    assert first["segments_ms"] == {
        "capture": 200,
        "uplink": 250,
        "inference": 250,
        "downlink": 10,
        "playback": 50,
    }
    assert first["end_to_end_ms"] == 760 and first["unknown_segments"] == []
    assert second["unknown_segments"] == ["uplink", "inference", "playback"]
    assert second["unattributed_ms"] == 750  # sent -> first delta, across the missing stamp
    assert report["totals"]["latency_ms"]["first_audio"]["measured"] == 2
    # 80 * $32 + 20 * $4 + 40 * $64 + 10 * $16 per million tokens.
    assert report["cost"]["known_usd"] == "0.00536"
    assert report["cost"]["complete"] is True
    [low] = report["rate_limits"]["low_water"]
    assert (low["name"], low["remaining"], low["below_threshold"]) == ("tokens", 150, True)

    page = files.html_path.read_text()
    charts = pngs_in(page)
    assert len(charts) == 2
    for png in charts:
        picture = image.imread(io.BytesIO(png), format="png")
        assert picture.shape[0] >= 200 and picture.shape[1] >= 600
    assert "$0.005360" in page
    assert "Not measured here: uplink, inference, playback" in page


def test_clock_skew_is_flagged_in_the_report_and_the_metrics_not_hidden(tmp_path: Path) -> None:
    # The server's stamp runs 40 ms behind ours: uplink comes out negative.
    skewed = budget(TurnStamps(1_000, 1_100, 1_060, 1_500, 1_510, 1_530))
    metrics = VoxpipeMetrics()
    metrics.observe_turn(skewed)
    files = write_report(tmp_path, Timeline(), [skewed], CostLedger(), RateLimitTracker())

    report = json.loads(files.json_path.read_text())
    [turn] = report["turns"]
    assert turn["segments_ms"]["uplink"] == -40
    assert turn["skewed"] == ["uplink"]
    assert report["totals"]["skewed_turns"] == 1
    assert "Negative (clock skew between stamps): uplink" in files.html_path.read_text()
    skew = sample(metrics.render().decode(), "voxpipe_clock_skew_total", segment="uplink")
    assert skew == 1.0
    # A negative figure is never observed as latency.
    assert (
        sample(metrics.render().decode(), "voxpipe_latency_segment_seconds_count", segment="uplink")
        is None
    )


def test_a_call_with_no_usage_and_an_unpriced_model_says_its_cost_is_unknown(
    tmp_path: Path,
) -> None:
    files = write_report(tmp_path, Timeline(), [], CostLedger(), RateLimitTracker())
    report = json.loads(files.json_path.read_text())
    assert report["cost"]["statement"] == "unknown: no response reported its usage"
    assert report["cost"]["complete"] is False

    ledger = CostLedger(model="some-new-model")
    ledger.record("resp_1", USAGE)
    files = write_report(tmp_path, Timeline(), [], ledger, RateLimitTracker())
    report = json.loads(files.json_path.read_text())
    [response] = report["cost"]["responses"]
    assert response["usd"] is None and "not in price table" in response["unknown_reason"]
    assert report["cost"]["statement"].startswith("unknown: 1 of 1 responses")
    assert report["cost"]["known_usd"] == "0"
    assert "No rate-limit readings" in files.html_path.read_text()
