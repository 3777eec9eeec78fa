"""Scenario files: what parses, and a clear error naming the file and the key for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpipe.errors import ConfigError, ScenarioError
from voxpipe.evals.caller import CallerCues
from voxpipe.evals.scenario import CueEvent, ExpectKind, SendAfter, load_scenarios

GOOD = """
name: hours
agent: agent.toml
brain:
  script:
    - function_call: {name: get_opening_hours, arguments: {day: Saturday}}
    - "We open at nine."
scenarios:
  - name: saturday
    turns:
      - user: "When do you open on Saturday?"
        expect:
          - event: function_call
            calls: [{name: get_opening_hours, args: {day: saturday}}]
          - event: llm_response
            text_contains: nine
            within_ms: 3000
      - user: ["Wait", {pause_ms: 400}, "do you take cards?"]
        send_after: {event: bot_started_speaking, delay_ms: 800}
        expect:
          - event: bot_interrupted
            stop_within_ms: 900
          - event: function_call
            calls: []
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_scenario_file_parses_with_pipecats_keys_and_voxpipes(tmp_path: Path) -> None:
    (scenario,) = load_scenarios(_write(tmp_path, GOOD))
    assert scenario.name == "hours/saturday"
    assert scenario.agent == (tmp_path / "agent.toml").resolve()
    assert scenario.brain_script is not None and len(scenario.brain_script) == 2
    first, second = scenario.turns
    assert [e.kind for e in first.expect] == [ExpectKind.FUNCTION_CALL, ExpectKind.RESPONSE]
    assert first.expect[0].calls is not None and first.expect[0].calls[0].args == {
        "day": "saturday"
    }
    assert first.expect[1].within_ms == 3000
    assert second.parts == ("Wait", 400, "do you take cards?")
    assert second.text == "Wait do you take cards?"
    assert second.send_after == SendAfter(CueEvent.BOT_STARTED_SPEAKING, 800)
    assert second.expect[1].calls == ()  # must not call


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("scenarios: 3", "scenarios"),
        ("scenarios:\n  - name: a\n    turns: []", "scenarios[0].turns"),
        ("scenarios:\n  - name: a\n    turns:\n      - expect: []", "scenarios[0].turns[0].user"),
        (
            "scenarios:\n  - name: a\n    turns:\n      - user: hi\n        expect:\n"
            "          - event: image",
            "scenarios[0].turns[0].expect[0].event",
        ),
        (
            "scenarios:\n  - name: a\n    turns:\n      - user: hi\n        expect:\n"
            "          - event: response\n            text_contians: x",
            "scenarios[0].turns[0].expect[0].text_contians",
        ),
        (
            "scenarios:\n  - name: a\n    turns:\n      - user: hi\n"
            "        send_after: {event: llm_started}",
            "scenarios[0].turns[0].send_after.event",
        ),
        (
            "scenarios:\n  - name: a\n    turns:\n      - user: hi\n        expect:\n"
            "          - event: response\n            matches: '(unclosed'",
            "scenarios[0].turns[0].expect[0].matches",
        ),
        (
            "scenarios:\n  - name: a\n    turns:\n      - user: hi\n        expect:\n"
            "          - event: response\n            within_ms: -5",
            "scenarios[0].turns[0].expect[0].within_ms",
        ),
        (
            "brain: {script: [{function_call: {}}]}\nscenarios:\n  - name: a\n    turns:\n"
            "      - user: hi",
            "scenarios[0].brain.script",
        ),
        ("scenarios:\n  - name: a\n    persona: Jamie", "scenarios[0].goal"),
        (
            "scenarios:\n  - name: a\n    persona: Jamie\n    goal: book\n    turns: [{user: hi}]",
            "scenarios[0].turns",
        ),
        (
            "scenarios:\n  - name: a\n    persona: Jamie\n    goal: book\n"
            "    simulator: {service: ollama}",
            "scenarios[0].simulator.service",
        ),
        (
            "scenarios:\n  - name: a\n    persona: Jamie\n    goal: book\n"
            "    metrics: [{name: polite, criterion: stays polite}]",
            "scenarios[0].metrics[0].criterion",
        ),
        ("scenarios:\n  - name: a\n    goal: book\n    turns: [{user: hi}]", "scenarios[0].goal"),
        ("turns: [oops", "file"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # the CLI's exit code 2, nothing has run


def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    text = "scenarios:\n  - name: a\n    turns:\n      - usr: hi"
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(_write(tmp_path, text))
    assert caught.value.hint == "did you mean 'user'?"


def test_a_directory_is_every_yaml_in_it_and_an_empty_one_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no \.yaml"):
        load_scenarios(tmp_path)
    _write(tmp_path, GOOD, "a.yaml")
    _write(tmp_path, GOOD.replace("name: hours", "name: other"), "b.yml")
    assert [s.name for s in load_scenarios(tmp_path)] == ["hours/saturday", "other/saturday"]


def test_pipecats_older_single_scenario_shape_loads(tmp_path: Path) -> None:
    (scenario,) = load_scenarios(_write(tmp_path, "name: one\nturns:\n  - user: hello\n"))
    assert scenario.name == "one" and scenario.turns[0].text == "hello"


# -- when the caller says its next line ---------------------------------------------------


def test_a_line_waits_for_the_answer_and_then_for_quiet() -> None:
    cues = CallerCues([None, None], settle_ms=1000)
    assert not cues.due(0)  # the bot does not listen yet
    cues.ready(100)
    assert cues.due(100)
    cues.line_said(2000)
    assert not cues.due(2500)
    cues.bot_audio(2600, 20)
    cues.bot_audio(2620, 1000)  # one stretch, 2600-3620
    assert not cues.due(4000)
    assert cues.due(4620)


def test_a_barge_in_line_starts_after_the_bot_starts_speaking() -> None:
    cues = CallerCues([None, SendAfter(CueEvent.BOT_STARTED_SPEAKING, 800)])
    cues.ready(0)
    cues.line_said(1500)
    cues.bot_audio(1000, 500)  # before the line ended: not the answer
    assert not cues.due(2400)
    cues.bot_audio(2000, 3000)
    assert not cues.due(2700)
    assert cues.due(2800)


def test_a_bot_that_never_answers_does_not_hold_the_caller_forever() -> None:
    cues = CallerCues([None, None], answer_timeout_ms=5000)
    cues.ready(0)
    cues.line_said(1000)
    assert not cues.due(5900)
    assert cues.due(6000)
    cues.line_said(8000)
    assert cues.done and not cues.due(9000)


# -- a simulated caller (pipecat's persona format) ---------------------------------------

SIMULATED = """
name: capital
scenarios:
  - name: saturday
    persona: |
      Sam, a regular customer, polite and brief.
    goal: "Find out when the pharmacy opens on Saturday, then hang up."
    success: "the agent told the caller the Saturday opening time"
    max_turns: 6
    max_duration_s: 120
    simulator: {service: openai, model: gpt-4.1-mini}
    metrics:
      - name: tools
        measure: function_calls
        calls: [get_opening_hours, {name: get_weather, args: {city: Paris}}]
      - measure: turns
        max_value: 4
"""


def test_a_simulated_caller_parses_as_pipecat_writes_it(tmp_path: Path) -> None:
    from pipecat.evals.scenario import EvalScenarioFile

    from voxpipe.evals.scenario import ExpectedCall, SimulatorKind

    path = _write(tmp_path, SIMULATED)
    pipecats = [s.name for s in EvalScenarioFile.load(path).scenarios]  # pipecat's parser
    (scenario,) = load_scenarios(path)
    assert [scenario.name] == pipecats == ["capital/saturday"]
    sim = scenario.simulation
    assert sim is not None and scenario.turns == ()
    assert sim.persona == "Sam, a regular customer, polite and brief."
    assert sim.goal.startswith("Find out") and sim.success is not None
    assert (sim.max_turns, sim.simulator, sim.model) == (6, SimulatorKind.OPENAI, "gpt-4.1-mini")
    assert sim.calls == (
        ExpectedCall("get_opening_hours"),
        ExpectedCall("get_weather", {"city": "Paris"}),
    )
    assert sim.turns_range == (None, 4.0)
