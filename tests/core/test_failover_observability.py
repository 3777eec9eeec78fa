"""Brain switches as the operator sees them: timeline line, report section, metric, config, CLI."""

from __future__ import annotations

import argparse
from importlib import resources

import pytest
import yaml  # type: ignore[import-untyped]

from voxpipe.call.events import BrainSwitched, timeline_entry
from voxpipe.call.failover import Brain, FailoverConfig, SwitchReason
from voxpipe.cli.fallback import add_fallback_option, fallback_config
from voxpipe.errors import ConfigError
from voxpipe.guardrails.config import parse_agent_config
from voxpipe.observability.brains import brain_section
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.observability.events import CallEventMetrics
from voxpipe.timeline import EventKind, Timeline

SWITCH = BrainSwitched(
    Brain.REALTIME, Brain.CHAINED, SwitchReason.AUDIO_STALLED, "no reply audio for 2000 ms", 4_000
)


def test_a_switch_is_one_timeline_line_with_from_to_and_reason() -> None:
    entry = timeline_entry(SWITCH)
    assert entry is not None
    kind, data = entry
    assert kind is EventKind.BRAIN_SWITCHED
    assert (data["from"], data["to"], data["reason"]) == ("realtime", "chained", "audio_stalled")
    assert data["time_on_previous_ms"] == 4_000


def test_the_report_says_when_the_call_switched_and_how_long_it_spent_on_each_brain() -> None:
    timeline = Timeline()
    timeline.add(1_000, EventKind.CALL_STARTED, mode="realtime")
    kind, data = timeline_entry(SWITCH) or (None, {})
    assert kind is not None
    timeline.add(5_000, kind, **data)
    timeline.add(65_000, EventKind.CALL_ENDED)
    section = brain_section(timeline)
    assert section["time_ms"] == {"realtime": 4_000, "chained": 60_000}
    [switch] = section["switches"]
    assert (switch["at_ms"], switch["from"], switch["to"]) == (5_000, "realtime", "chained")


def test_a_call_without_a_switch_spent_its_whole_time_on_its_brain() -> None:
    timeline = Timeline()
    timeline.add(0, EventKind.CALL_STARTED, mode="chained")
    timeline.add(9_000, EventKind.CALL_ENDED)
    assert brain_section(timeline) == {"switches": [], "time_ms": {"chained": 9_000}}
    assert brain_section(Timeline()) == {"switches": [], "time_ms": {}}


def test_a_switch_counts_in_the_metric_the_alert_reads() -> None:
    metrics = VoxpipeMetrics(environment="production", project="acme")
    CallEventMetrics(metrics).record(SWITCH)
    labels = {
        "environment": "production",
        "project": "acme",
        "from_brain": "realtime",
        "to_brain": "chained",
        "reason": "audio_stalled",
    }
    assert metrics.registry.get_sample_value("voxpipe_brain_switches_total", labels) == 1
    text = resources.files("voxpipe").joinpath("data/alerts.yml").read_text(encoding="utf-8")
    rules = [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]
    [rule] = [r for r in rules if r["alert"] == "VoxpipeBrainFailover"]
    assert "voxpipe_brain_switches_total" in rule["expr"] and 'to_brain="chained"' in rule["expr"]


def test_agent_file_fallback_table() -> None:
    agent = parse_agent_config({"fallback": {"first_audio_deadline_ms": 3_000, "reconnects": 2}})
    assert agent.fallback == FailoverConfig(first_audio_deadline_ms=3_000, reconnects=2)
    assert agent.fallback.backoff().max_in_window == 2
    assert parse_agent_config({}).fallback is None
    assert parse_agent_config({"fallback": {}}).fallback == FailoverConfig()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"brain": "realtime"}, "[fallback].brain must be 'chained'"),
        ({"deadline": 1}, "unknown key [fallback].deadline"),
        ({"stall_ms": "2 s"}, "[fallback].stall_ms must be a whole number"),
        ({"stall_ms": True}, "[fallback].stall_ms must be a whole number"),
        ({"reconnects": 0}, "reconnects, server_storm and probes_needed must be at least 1"),
    ],
)
def test_a_bad_fallback_table_names_the_file_and_key(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"agent\.toml") as caught:
        parse_agent_config({"fallback": table}, source="agent.toml")
    assert message in str(caught.value)


def test_the_fallback_option_over_the_agent_file() -> None:
    parser = argparse.ArgumentParser()
    add_fallback_option(parser)
    tuned = parse_agent_config({"fallback": {"stall_ms": 900}})
    assert fallback_config(parser.parse_args([]).fallback) is None
    assert fallback_config(parser.parse_args(["--fallback", "chained"]).fallback) == (
        FailoverConfig()
    )
    assert fallback_config(None, tuned) == FailoverConfig(stall_ms=900)
    assert fallback_config("chained", tuned) == FailoverConfig(stall_ms=900)
    assert fallback_config("none", tuned) is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--fallback", "openai"])
