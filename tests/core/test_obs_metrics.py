"""Prometheus metrics and the shipped alert rules."""

from __future__ import annotations

import enum
import re
from importlib import resources
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from voxpipe.observability.cost import CostLedger
from voxpipe.observability.latency import TurnStamps, budget
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.observability.ratelimits import RateLimitTracker

BASE = {"environment": "production", "project": "acme"}


class FailureClass(enum.Enum):
    TRANSIENT = "transient"


def _value(metrics: VoxpipeMetrics, sample: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(sample, {**BASE, **labels})


def test_turn_latency_lands_in_the_histograms_in_seconds() -> None:
    metrics = VoxpipeMetrics(**BASE)
    metrics.observe_turn(budget(TurnStamps(1000, 1020, 1060, 1600, 1625, 1705)))
    assert _value(metrics, "voxpipe_first_audio_seconds_sum") == pytest.approx(0.625)
    assert _value(metrics, "voxpipe_first_audio_seconds_bucket", le="0.5") == 0
    assert _value(metrics, "voxpipe_first_audio_seconds_bucket", le="0.75") == 1
    assert _value(metrics, "voxpipe_end_to_end_seconds_sum") == pytest.approx(0.705)
    inference = _value(metrics, "voxpipe_latency_segment_seconds_sum", segment="inference")
    assert inference == pytest.approx(0.54)


def test_skewed_segments_are_counted_not_observed_and_unknown_ones_skipped() -> None:
    metrics = VoxpipeMetrics(**BASE)
    metrics.observe_turn(budget(TurnStamps(1000, 1020, 960, 1600, 1625, None)))
    assert _value(metrics, "voxpipe_clock_skew_total", segment="uplink") == 1
    assert _value(metrics, "voxpipe_latency_segment_seconds_count", segment="uplink") is None
    assert _value(metrics, "voxpipe_latency_segment_seconds_count", segment="playback") is None
    assert _value(metrics, "voxpipe_end_to_end_seconds_count") is None


def test_counters_and_gauges_carry_environment_and_project() -> None:
    metrics = VoxpipeMetrics(**BASE)
    metrics.record_interruption()
    metrics.record_interruption(recovered=False)
    metrics.record_rollover()
    metrics.record_reconnect(FailureClass.TRANSIENT)
    metrics.record_token_rotation(ok=True)
    metrics.record_token_rotation(ok=False)
    metrics.record_guardrail_trip("pii")
    metrics.record_error("invalid_request_error")
    tracker = RateLimitTracker()
    tracker.on_http_headers(
        {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "250"}, now_ms=0
    )
    for reading in tracker.latest.values():
        metrics.record_rate_limit(reading)
    assert _value(metrics, "voxpipe_interruptions_total") == 2
    assert _value(metrics, "voxpipe_interruption_recovery_failures_total") == 1
    assert _value(metrics, "voxpipe_rollovers_total") == 1
    assert _value(metrics, "voxpipe_reconnects_total", failure_class="transient") == 1
    assert _value(metrics, "voxpipe_token_rotations_total") == 1
    assert _value(metrics, "voxpipe_token_rotation_failures_total") == 1
    assert _value(metrics, "voxpipe_guardrail_trips_total", policy="pii") == 1
    assert _value(metrics, "voxpipe_errors_total", error_type="invalid_request_error") == 1
    labels = {"name": "tokens", "source": "http"}
    assert _value(metrics, "voxpipe_rate_limit_remaining", **labels) == 250
    assert _value(metrics, "voxpipe_rate_limit_remaining_ratio", **labels) == 0.25
    assert b'environment="production"' in metrics.render()


def test_cost_counters_add_priced_responses_and_count_unpriced_ones() -> None:
    metrics = VoxpipeMetrics(**BASE)
    ledger = CostLedger()
    usage = {"output_tokens": 1000, "output_token_details": {"audio_tokens": 1000}}
    metrics.record_cost(ledger.record("r1", usage))
    metrics.record_cost(ledger.record("r2", None))
    assert _value(metrics, "voxpipe_cost_usd_total", model="gpt-realtime") == pytest.approx(0.064)
    assert _value(metrics, "voxpipe_unpriced_responses_total", model="gpt-realtime") == 1
    tokens = _value(metrics, "voxpipe_tokens_total", model="gpt-realtime", kind="audio_out")
    assert tokens == 1000


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = VoxpipeMetrics(**BASE), VoxpipeMetrics(**BASE)
    first.record_rollover()
    assert _value(second, "voxpipe_rollovers_total") is None


def _rules() -> list[dict[str, Any]]:
    text = resources.files("voxpipe").joinpath("data/alerts.yml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_cover_the_required_alerts() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in _rules()}
    assert "histogram_quantile(0.95" in rules["VoxpipeFirstAudioSlow"]
    assert rules["VoxpipeFirstAudioSlow"].strip().endswith("> 1.5")
    assert "> 0" in rules["VoxpipeTokenRotationFailed"]
    assert "> 0.05" in rules["VoxpipeInterruptionRecoveryFailing"]
    assert "[15m]" in rules["VoxpipeReconnectBurst"]
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_expressions_use_only_metrics_and_labels_voxpipe_defines(
    rule: dict[str, Any],
) -> None:
    defined = VoxpipeMetrics().definitions()
    expr = rule["expr"]
    used = set(re.findall(r"\bvoxpipe_[a-z_]+", expr))
    assert used, "an alert that reads no voxpipe metric can never fire"
    assert used <= defined.keys()
    labels = set(re.findall(r"\bby\s*\(([^)]*)\)", expr))
    for group in labels:
        for label in (name.strip() for name in group.split(",")):
            assert all(label in defined[metric] for metric in used), label
