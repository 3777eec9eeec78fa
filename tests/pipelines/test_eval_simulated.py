"""Simulated callers and the OpenAI judge: real calls through voxpipe's own Realtime server.

The persona is played by an LLM that answers the bot turn by turn: the local
llama.cpp model (offline), or OpenAI's chat model, here a loopback stand-in
built to OpenAI's chat-completions reference (tests/support/fake_openai_chat.py)
that answers as the test says, so what the persona and the judge decide is
known and each simulated grader's failing case is a real call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_openai_chat import API_KEY, running_fake_chat

from voxpipe.errors import FatalProviderError
from voxpipe.evals.chat import OpenAIChat
from voxpipe.evals.graders import CheckKind, grade
from voxpipe.evals.judge import ChatJudge
from voxpipe.evals.persona import END_CALL
from voxpipe.evals.record import load_record
from voxpipe.evals.results import CallVerdict
from voxpipe.evals.scenario import load_scenarios
from voxpipe.pipelines.eval_run import EvalOptions, _Voice, run_suite

SUITE = Path(__file__).resolve().parents[2] / "evals"

SIMULATION = f"""
name: sim
agent: {SUITE / "agent.toml"}
brain:
  script:
    - function_call: {{name: get_opening_hours, arguments: {{day: Saturday}}}}
    - "On Saturday we open at nine in the morning."
    - "You're welcome. Goodbye!"
scenarios:
  - name: saturday_hours
    persona: "Sam, a regular customer of the pharmacy, polite and brief."
    goal: "Find out when the pharmacy opens on Saturday, then hang up."
    success: "the agent told the caller the Saturday opening time"
    max_turns: 4
    metrics:
      - measure: function_calls
        calls: [{{name: get_opening_hours, args: {{day: saturday}}}}]
      - measure: turns
        max_value: 3
"""

QUESTION = "What time do you open on Saturday?"
GOODBYE = "Great, thank you. Bye."


def _explain(verdicts: list[CallVerdict]) -> str:
    return "\n".join(
        f"{v.scenario}: {c.kind.value} t{c.turn} {c.passed} {c.evidence}"
        for v in verdicts
        for c in v.checks
    )


def _is_judge(body: dict[str, Any]) -> bool:
    return "response_format" in body


def _chat(url: str) -> OpenAIChat:
    return OpenAIChat(api_key=API_KEY, base_url=url, model="gpt-4.1-mini")


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the brain: the embedded server


def _said(record: Any) -> list[str]:
    return [t.text for t in record.caller_turns if t.text]


def _assert_spoken_by_the_voice(record: Any) -> None:
    """Each line the caller said is the deterministic voice's audio of its text, no more."""
    voice = _Voice()
    for span, text in zip(record.lines, _said(record), strict=True):
        expected_ms = len(voice.speak(text)) / 32  # 16 kHz PCM16
        assert expected_ms <= span.ms < expected_ms + 20.5, (text, span.ms, expected_ms)


async def test_a_persona_on_openai_reaches_its_goal_and_the_judge_says_so(
    tmp_path: Path,
) -> None:
    def answer(body: dict[str, Any]) -> Any:
        if _is_judge(body):
            told = body["messages"][-1]["content"]
            ok = "nine in the morning" in told
            return '{"passed": %s, "reason": "said nine"}' % ("true" if ok else "false")
        heard = body["messages"][-1]["content"]
        if "nine in the morning" in heard:
            return {"content": GOODBYE, "calls": [(END_CALL, {"success": True, "reason": "ok"})]}
        return QUESTION

    path = tmp_path / "sim.yaml"
    path.write_text(SIMULATION)
    async with running_fake_chat(answer) as fake:
        options = EvalOptions(
            out_dir=tmp_path / "out", simulator=_chat(fake.url), judge=ChatJudge(_chat(fake.url))
        )
        (verdict,) = await run_suite(load_scenarios(path), options)
    assert verdict.passed, _explain([verdict])
    checks = {(c.kind, c.where): c for c in verdict.checks}
    assert checks[(CheckKind.CALL, "max_turns")].passed is True
    assert "hung up after 2 lines" in checks[(CheckKind.CALL, "max_turns")].evidence
    assert checks[(CheckKind.TOOL_CALLS, "metric function_calls")].passed is True
    assert checks[(CheckKind.EVENT, "metric turns")].passed is True
    assert checks[(CheckKind.JUDGE, "success")].passed is True

    record = load_record(verdict.call_dir)
    assert _said(record) == [QUESTION, GOODBYE]
    _assert_spoken_by_the_voice(record)
    persona = [b for b in fake.requests if not _is_judge(b)]
    assert len(persona) == 2  # one completion per caller turn, none after the hang-up
    assert all(b["tools"][0]["function"]["name"] == END_CALL for b in persona)
    assert "Saturday" in persona[0]["messages"][0]["content"]  # the goal, in its instruction
    # Turn by turn: the second turn heard what the bot said to the first.
    assert "nine in the morning" in persona[1]["messages"][-1]["content"]
    assert persona[1]["messages"][-2] == {"role": "assistant", "content": QUESTION}
    (judged,) = [b for b in fake.requests if _is_judge(b)]
    assert judged["response_format"]["json_schema"]["name"] == "verdict"
    assert f"Caller: {QUESTION}" in judged["messages"][-1]["content"]
    # Graded again from the files alone, with the same judge: the same checks.
    again = grade(load_scenarios(path)[0], record, None)
    assert [c.kind for c in again] == [c.kind for c in verdict.checks]


async def test_a_persona_that_never_hangs_up_a_forbidden_call_and_a_no_from_the_judge_fail(
    tmp_path: Path,
) -> None:
    def answer(body: dict[str, Any]) -> Any:
        if _is_judge(body):
            return '{"passed": false, "reason": "the agent never confirmed a booking"}'
        return "Can I book a flu shot for Saturday?"

    text = (
        SIMULATION.replace("max_turns: 4", "max_turns: 2")
        .replace("calls: [{name: get_opening_hours, args: {day: saturday}}]", "calls: []")
        .replace("max_value: 3", "max_value: 1")
    )
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    async with running_fake_chat(answer) as fake:
        options = EvalOptions(
            out_dir=tmp_path / "out", simulator=_chat(fake.url), judge=ChatJudge(_chat(fake.url))
        )
        (verdict,) = await run_suite(load_scenarios(path), options)
    checks = {(c.kind, c.where): c for c in verdict.checks}
    limit = checks[(CheckKind.CALL, "max_turns")]
    assert limit.passed is False and "all 2 of 2 turns" in limit.evidence, _explain([verdict])
    calls = checks[(CheckKind.TOOL_CALLS, "metric function_calls")]
    assert calls.passed is False and "not listed: get_opening_hours" in calls.evidence
    assert checks[(CheckKind.EVENT, "metric turns")].passed is False  # 2 lines, at most 1
    judge = checks[(CheckKind.JUDGE, "success")]
    assert judge.passed is False and "never confirmed a booking" in judge.evidence
    assert verdict.row()["failing_kind"] == "call"
    assert len([b for b in fake.requests if not _is_judge(b)]) == 2  # stopped at max_turns


async def test_a_judge_with_a_bad_key_grades_nothing_and_says_why(tmp_path: Path) -> None:
    async with running_fake_chat(lambda body: '{"passed": true, "reason": "x"}') as fake:
        bad = ChatJudge(OpenAIChat(api_key="sk-wrong", base_url=fake.url))
        with pytest.raises(FatalProviderError) as caught:
            await _in_thread(bad.judge, "says hello", "hello", [])
        assert caught.value.code == "invalid_api_key"
        assert fake.refused == [401]  # refused once: a bad key is not retried
        # In a call's grading, the same failure leaves the criterion not graded.
        path = tmp_path / "sim.yaml"
        path.write_text(SIMULATION)
        (scenario,) = load_scenarios(path)
        from voxpipe.evals.persona import CallerTurn
        from voxpipe.evals.record import CallRecord, Span

        record = CallRecord(
            lines=(Span(0, 1000),),
            bot_audio=(Span(1500, 3000),),
            events=(),
            ended_ms=4000,
            bot_text=((1600.0, "We open at nine in the morning."),),
            caller_turns=(CallerTurn(QUESTION), CallerTurn("", hung_up=True, success=True)),
        )
        checks = await _in_thread(grade, scenario, record, bad)
    (judged,) = [c for c in checks if c.kind is CheckKind.JUDGE]
    assert judged.passed is None and "refused the key" in judged.evidence


async def _in_thread(fn: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args)


LOCAL = f"""
name: local_persona
agent: {SUITE / "agent.toml"}
brain:
  script:
    - "On Saturday we open at nine in the morning and close at one in the afternoon."
scenarios:
  - name: saturday
    persona: "Sam, a customer of Green Cross pharmacy."
    goal: "Ask what time the pharmacy opens on Saturday."
    simulator: {{service: local}}
    max_turns: 2
"""


@pytest.mark.models
@pytest.mark.timeout(1200)  # the 0.5B model took 50-130 s a line at load 20-29
async def test_a_persona_played_by_the_local_model_answers_the_bot_turn_by_turn(
    tmp_path: Path,
) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL)
    (verdict,) = await run_suite(load_scenarios(path), EvalOptions(out_dir=tmp_path / "out"))
    record = load_record(verdict.call_dir)
    said = _said(record)
    assert 1 <= len(said) <= 2, record.caller_turns
    assert len(record.lines) == len(said)
    assert all(len(line.split()) >= 2 for line in said), said  # words, not fragments
    _assert_spoken_by_the_voice(record)
    # The bot answered each line it heard (the embedded scripted brain's line).
    reply = record.text_between(record.lines[0].end_ms, record.ended_ms + 1)
    assert "nine in the morning" in reply
    assert not any(t.error for t in record.caller_turns), record.caller_turns
    # It hung up (said goodbye) or used its 2 turns; the check says which.
    (limit,) = [c for c in verdict.checks if c.where == "max_turns"]
    assert limit.passed is any(t.hung_up for t in record.caller_turns), _explain([verdict])
