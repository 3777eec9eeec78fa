"""Graders over a call's record: each passes on the call it describes and fails when it should."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxpipe.evals.graders import Check, CheckKind, JudgeVerdict, grade
from voxpipe.evals.record import (
    BrainContext,
    CallRecord,
    HeardText,
    Span,
    cut_replies,
    heard_audio,
    heard_words,
    merge_spans,
    word_spans,
)
from voxpipe.evals.scenario import parse_file
from voxpipe.timeline import EventKind, TimelineEvent
from voxpipe.transports.realtime_server.brains import SyntheticVoice

REPLY = "Our pharmacy opens at nine in the morning on Saturday"


def _scenario(expect: list[dict[str, Any]], second: list[dict[str, Any]] | None = None) -> Any:
    turns: list[dict[str, Any]] = [{"user": "When do you open?", "expect": expect}]
    if second is not None:
        turns.append({"user": "Do you take cards?", "expect": second})
    (scenario,) = parse_file({"scenarios": [{"name": "s", "turns": turns}]}, Path("s.yaml"))
    return scenario


def _record(
    events: list[tuple[float, EventKind, dict[str, Any]]],
    *,
    lines: tuple[Span, ...] = (Span(0, 1000),),
    bot_audio: tuple[Span, ...] = (Span(1500, 4000),),
    contexts: tuple[BrainContext, ...] | None = None,
    bot_words: tuple[Span, ...] | None = None,
) -> CallRecord:
    return CallRecord(
        lines=lines,
        bot_audio=bot_audio,
        events=tuple(TimelineEvent(t, kind, data) for t, kind, data in events),
        contexts=contexts,
        bot_words=bot_words,
        ended_ms=10_000,
    )


def _verdicts(checks: list[Check]) -> list[tuple[CheckKind, bool | None]]:
    return [(c.kind, c.passed) for c in checks]


TOOL = (
    1200,
    EventKind.TOOL_CALL_STARTED,
    {"name": "get_opening_hours", "arguments": {"day": "Sat"}},
)
TEXT = (4000, EventKind.ASSISTANT_TEXT, {"text": REPLY})


@pytest.mark.parametrize(
    ("expect", "passed"),
    [
        ({"calls": [{"name": "get_opening_hours", "args": {"day": "sat"}}]}, True),
        ({"calls": [{"name": "get_opening_hours", "args": {"day": "Sunday"}}]}, False),  # wrong arg
        ({"calls": [{"name": "get_weather"}]}, False),
        ({"name": "get_opening_hours"}, True),
        ({"calls": []}, False),  # must not call, and it called
        ({"absent": True}, False),
    ],
)
def test_tool_calls_by_name_and_argument_subset(expect: dict[str, Any], passed: bool) -> None:
    checks = grade(_scenario([{"event": "function_call", **expect}]), _record([TOOL, TEXT]))
    assert _verdicts(checks) == [(CheckKind.TOOL_CALLS, passed)]
    assert "get_opening_hours({'day': 'Sat'})" in checks[0].evidence


def test_must_not_call_passes_when_nothing_was_called() -> None:
    checks = grade(_scenario([{"event": "function_call", "calls": []}]), _record([TEXT]))
    assert _verdicts(checks) == [(CheckKind.TOOL_CALLS, True)]


@pytest.mark.parametrize(
    ("expect", "passed"),
    [
        ({"text_contains": "nine in the MORNING"}, True),
        ({"text_contains": "ten"}, False),
        ({"text_excludes": "Saturday"}, False),
        ({"matches": r"opens at \w+ in the"}, True),
        ({"matches": r"closed"}, False),
    ],
)
def test_text_on_the_reply(expect: dict[str, Any], passed: bool) -> None:
    checks = grade(_scenario([{"event": "response", **expect}]), _record([TEXT]))
    assert _verdicts(checks) == [(CheckKind.LATENCY, True), (CheckKind.TEXT, passed)]


def test_latency_is_from_the_end_of_the_line_to_the_first_bot_audio() -> None:
    scenario = _scenario([{"event": "response", "within_ms": 400}])
    assert grade(scenario, _record([TEXT], bot_audio=(Span(1400, 3000),)))[0].passed is True
    late = grade(scenario, _record([TEXT], bot_audio=(Span(1500, 3000),)))[0]
    assert late.passed is False and "500 ms" in late.evidence
    silent = grade(scenario, _record([], bot_audio=()))[0]
    assert silent.passed is False and "never answered" in silent.evidence


def test_a_stall_inside_the_reply_fails_max_gap() -> None:
    scenario = _scenario([{"event": "response", "max_gap_ms": 1000}])
    stalled = (Span(1500, 1700), Span(4700, 6000))  # 3 s of silence after the first audio
    checks = grade(scenario, _record([TEXT], bot_audio=stalled))
    assert _verdicts(checks) == [(CheckKind.LATENCY, True), (CheckKind.LATENCY, False)]
    assert "3000 ms" in checks[1].evidence
    smooth = grade(scenario, _record([TEXT], bot_audio=(Span(1500, 6000),)))
    assert all(c.passed for c in smooth)


def _barge_in_record(kept: str, stopped_at: float = 3300) -> CallRecord:
    # The bot speaks 1500-4000; the caller cuts in at 3000; 8 words were heard by then.
    words = tuple(Span(1500 + i * 200, 1650 + i * 200) for i in range(8))
    return _record(
        [(3400, EventKind.ITEM_TRUNCATED, {"audio_end_ms": 1700})],
        lines=(Span(0, 1000), Span(3000, 4500)),
        bot_audio=(Span(1500, stopped_at), Span(5000, 6000)),
        contexts=(
            BrainContext(1100, ({"role": "user", "content": ""},)),
            BrainContext(4600, ({"role": "assistant", "content": kept},)),
        ),
        bot_words=words,
    )


def test_barge_in_passes_when_the_bot_stops_and_keeps_what_was_heard() -> None:
    scenario = _scenario([], [{"event": "bot_interrupted", "stop_within_ms": 500}])
    checks = grade(scenario, _barge_in_record("Our pharmacy opens at nine in the morning on"))
    assert _verdicts(checks) == [(CheckKind.BARGE_IN, True), (CheckKind.BARGE_IN, True)]


def test_barge_in_fails_when_the_context_holds_words_the_caller_never_heard() -> None:
    scenario = _scenario([], [{"event": "bot_interrupted"}])
    checks = grade(scenario, _barge_in_record(REPLY + " and closes at one"))
    assert _verdicts(checks)[1] == (CheckKind.BARGE_IN, False)
    assert "heard 8 words; the context kept 14" in checks[1].evidence


@pytest.mark.parametrize(
    ("kept", "passed"),
    [
        ("Our pharmacy opens at nine in the", True),  # 7 of 8: a word cut mid-way
        ("Our pharmacy opens at nine in", True),  # 6 of 8: the cut lagged under load
        ("Our pharmacy opens at nine", False),  # 5 of 8: heard words dropped
        ("Our pharmacy opens at nine in the morning on", True),  # 9: one over, cut mid-word
        ("Our pharmacy opens at nine in the morning on Saturday", False),  # 10: unheard words
    ],
)
def test_the_context_may_fall_a_little_short_of_what_was_heard_but_not_run_past_it(
    kept: str, passed: bool
) -> None:
    scenario = _scenario([], [{"event": "bot_interrupted"}])
    checks = grade(scenario, _barge_in_record(kept))
    assert checks[1].passed is passed, checks[1].evidence


@pytest.mark.parametrize(
    ("kept", "passed"),
    [
        ("Our pharmacy opens at 9 in the", True),  # 7 of 8 as the STT heard them
        ("Our pharmacy opens at nine in the morning on Saturday", False),  # 10: unheard words
        ("Our pharmacy opens", False),  # 3: heard words dropped
    ],
)
def test_a_real_voices_heard_words_are_counted_from_the_local_stts_transcript(
    kept: str, passed: bool
) -> None:
    # The local voice's words run together: the runner transcribes the heard audio.
    heard = HeardText(1, Span(1000, 3300), "Our pharmacy opens at 9 in the morning.")
    record = dataclasses.replace(_barge_in_record(kept), bot_words=None, heard_text=(heard,))
    scenario = _scenario([], [{"event": "bot_interrupted"}])
    checks = grade(scenario, record)
    assert checks[1].passed is passed, checks[1].evidence
    assert "heard 8 words (the local STT heard 'Our pharmacy" in checks[1].evidence


def test_without_a_transcript_a_real_voices_truncation_is_not_graded() -> None:
    record = dataclasses.replace(_barge_in_record("Our pharmacy"), bot_words=None)
    checks = grade(_scenario([], [{"event": "bot_interrupted"}]), record)
    assert checks[1].passed is None and "cannot be counted" in checks[1].evidence


def test_barge_in_fails_when_the_bot_talks_on() -> None:
    scenario = _scenario([], [{"event": "bot_interrupted", "stop_within_ms": 500}])
    checks = grade(scenario, _barge_in_record("Our pharmacy opens at nine", stopped_at=4000))
    assert checks[0].passed is False and "1000 ms" in checks[0].evidence


def test_barge_in_on_a_silent_bot_fails() -> None:
    scenario = _scenario([], [{"event": "bot_interrupted"}])
    record = _record([], lines=(Span(0, 1000), Span(5000, 6000)), bot_audio=(Span(1500, 4000),))
    assert _verdicts(grade(scenario, record)) == [(CheckKind.BARGE_IN, False)]


@pytest.mark.parametrize(
    ("expect", "tripped", "passed"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"policy": "pii"}, True, False),
        ({"absent": True}, True, False),
        ({"absent": True}, False, True),
    ],
)
def test_guardrail_trip_expected_or_forbidden(
    expect: dict[str, Any], tripped: bool, passed: bool
) -> None:
    trip = (2000, EventKind.GUARDRAIL_TRIPPED, {"policy": "deny", "span": "double the dose"})
    record = _record([trip] if tripped else [])
    checks = grade(_scenario([{"event": "guardrail_tripped", **expect}]), record)
    assert _verdicts(checks) == [(CheckKind.GUARDRAIL, passed)]


def test_cost_over_the_limit_fails() -> None:
    costs = [(3000, EventKind.COST, {"usd": "0.004"}), (5000, EventKind.COST, {"usd": "0.003"})]
    under = grade(_scenario([{"event": "cost", "max_usd": 0.01}]), _record(costs))
    over = grade(_scenario([{"event": "cost", "max_usd": 0.005}]), _record(costs))
    assert under[0].passed is True and over[0].passed is False
    assert "$0.007" in over[0].evidence
    unpriced = grade(
        _scenario([{"event": "cost", "max_usd": 1}]),
        _record([(3000, EventKind.COST, {"usd": None})]),
    )
    assert unpriced[0].passed is False  # an unpriced response is not free


class KeywordJudge:
    """A fake judge: the criterion's last word must be in the reply."""

    def judge(self, criterion: str, text: str, conversation: list[dict[str, str]]) -> JudgeVerdict:
        word = criterion.split()[-1]
        return JudgeVerdict(word in text.lower(), f"looked for {word!r}")


def test_an_eval_criterion_goes_to_the_judge_or_is_not_graded() -> None:
    good = _scenario([{"event": "response", "eval": "says the pharmacy opens at nine"}])
    bad = _scenario([{"event": "response", "eval": "says the pharmacy opens at ten"}])
    assert grade(good, _record([TEXT]), KeywordJudge())[-1].passed is True
    assert grade(bad, _record([TEXT]), KeywordJudge())[-1].passed is False
    unjudged = grade(good, _record([TEXT]))[-1]
    assert unjudged.kind is CheckKind.JUDGE and unjudged.passed is None


def test_a_turn_the_caller_never_reached_fails_the_call() -> None:
    scenario = _scenario([], [{"event": "response"}])
    checks = grade(scenario, _record([TEXT]))  # one line played of two
    assert _verdicts(checks) == [(CheckKind.CALL, False)]


def test_the_synthetic_voices_words_are_counted_from_its_audio() -> None:
    pcm = b"".join(SyntheticVoice().synthesize(REPLY))
    words = word_spans(pcm, SyntheticVoice.sample_rate)
    assert len(words) == len(REPLY.split())
    cut = int(len(pcm) * 0.5) // 2 * 2
    assert 0 < len(word_spans(pcm[:cut], SyntheticVoice.sample_rate)) < len(words)
    silence = np.zeros(24_000, dtype="<i2").tobytes()
    assert word_spans(silence, 24_000) == []


def test_written_chunks_merge_into_stretches() -> None:
    chunks = [(0.0, 20.0), (20.0, 20.0), (105.0, 20.0), (500.0, 20.0)]
    assert merge_spans(chunks) == [Span(0, 125), Span(500, 520)]


def test_words_are_counted_from_the_chunks_as_played_not_the_holes_jitter_left() -> None:
    # A paced output under load plays some 20 ms chunks late: call.wav gets holes of silence.
    rate = SyntheticVoice.sample_rate
    pcm = b"".join(SyntheticVoice().synthesize(REPLY))
    step = rate * 2 * 20 // 1000
    track, chunks, at_ms = bytearray(), [], 1000.0
    for i, start in enumerate(range(0, len(pcm), step)):
        at_ms += 20 + (25 if i % 7 == 3 else 0)  # every 7th chunk 25 ms late
        begin = int(at_ms * rate / 1000) * 2
        piece = pcm[start : start + step]
        track.extend(bytes(begin + len(piece) - len(track)))
        track[begin : begin + len(piece)] = piece
        chunks.append((at_ms, len(piece) / 2 / rate * 1000))
    assert len(word_spans(bytes(track), rate)) > len(REPLY.split())  # the holes split words
    words = heard_words(bytes(track), rate, chunks)
    assert len(words) == len(REPLY.split())
    assert words[0].start_ms == pytest.approx(1020, abs=10)  # on the call's clock


def test_the_reply_text_is_read_from_the_deltas_when_they_were_recorded() -> None:
    # A reply whose end frame never came (no assistant_text event) is still graded.
    record = dataclasses.replace(
        _record([]), bot_text=((900, "ignored "), (1200, "Our pharmacy "), (1300, "opens at nine"))
    )
    checks = grade(_scenario([{"event": "response", "text_contains": "opens at nine"}]), record)
    assert checks[-1].passed is True and "'Our pharmacy opens at nine'" in checks[-1].evidence


def test_the_cut_replies_and_their_heard_audio_are_found_as_the_grader_finds_them() -> None:
    lines = (Span(0, 1000), Span(3000, 4500), Span(8000, 9000))
    bot_audio = (Span(1500, 3300), Span(5000, 6000))
    # The second line cut the first reply; the third came after the second reply ended.
    assert cut_replies(lines, bot_audio) == [(1, Span(1000, 3300))]
    rate = 1000  # 1 sample a ms, 2 bytes each: easy to read
    pcm = b"".join(i.to_bytes(2, "little") for i in range(4000))
    chunks = [(1500.0, 20.0), (1540.0, 20.0), (5000.0, 20.0)]  # a late chunk left a hole
    heard = heard_audio(pcm, rate, chunks, Span(1000, 3300))
    assert len(heard) == 80  # 40 ms heard, end to end
    assert heard[:2] == (1500).to_bytes(2, "little") and heard[40:42] == (1540).to_bytes(
        2, "little"
    )
