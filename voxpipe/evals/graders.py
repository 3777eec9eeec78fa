"""Graders: each expectation of a scenario, judged against one call's record.

Pure functions of the scenario and the :class:`~voxpipe.evals.record.CallRecord`
(no clock, no I/O): a call's artifacts graded twice give the same checks. Each
check says what it graded, the turn, whether it passed (None: it could not be
graded, say why) and the evidence a person needs to see why.

Where a turn's events are looked for: tool calls and guardrail trips from the
start of its line to the start of the next; its reply (text, latency, gaps)
from the end of its line, since the answer comes after the question.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from voxpipe.errors import VoxpipeError
from voxpipe.evals.record import BrainContext, CallRecord, Span
from voxpipe.evals.scenario import Expectation, ExpectedCall, ExpectKind, Scenario, Simulation
from voxpipe.timeline import EventKind

DEFAULT_WITHIN_MS = 60_000  # pipecat's default budget for an expectation
DEFAULT_STOP_WITHIN_MS = 1_500  # a barge-in: the bot's audio stops within this of the line
WORD_SLACK = 1  # a word cut mid-way may count as heard on one side and not the other
# The context may fall this many words short of what was heard (never more over it):
# under load the cut's position lags the audio by up to ~500 ms (heard 7, kept 5 at
# load 7.4-8.8, 1 call in 15). A dropped heard word costs a repeated word; an unheard
# word kept is the bug this check is for (the bot believes it said what nobody heard).
SHORT_SLACK = 2


class CheckKind(enum.Enum):
    TOOL_CALLS = "tool_calls"
    TEXT = "text"
    LATENCY = "latency"
    BARGE_IN = "barge_in"
    GUARDRAIL = "guardrail"
    COST = "cost"
    EVENT = "event"
    JUDGE = "judge"
    CALL = "call"  # the call itself (a line never played, the brain gave up)


@dataclass(frozen=True)
class Check:
    kind: CheckKind
    turn: int | None  # 1-based; None for the whole call
    where: str
    passed: bool | None  # None: not graded (evidence says why)
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "turn": self.turn,
            "where": self.where,
            "passed": self.passed,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class JudgeVerdict:
    passed: bool
    reason: str


class Judge(Protocol):
    """An LLM judge (``--judge module:factory``): does ``text`` meet ``criterion``?"""

    def judge(self, criterion: str, text: str, conversation: list[dict[str, str]]) -> JudgeVerdict:
        """The verdict on one reply, given the conversation up to it."""
        ...


def grade(scenario: Scenario, record: CallRecord, judge: Judge | None = None) -> list[Check]:
    """Every expectation of ``scenario`` against ``record``, in order."""
    checks: list[Check] = []
    for index, turn in enumerate(scenario.turns):
        if index >= len(record.lines):
            checks.append(
                Check(CheckKind.CALL, index + 1, f"turn {index + 1}", False, "never said")
            )
            continue
        for expectation in turn.expect:
            grader = _GRADERS[expectation.kind]
            checks.extend(grader(expectation, index, record, _Context(scenario, judge)))
    if scenario.simulation is not None:
        checks.extend(_simulated(scenario.simulation, record, judge))
    fatal = [e for e in record.events if e.kind is EventKind.ERROR and e.data.get("fatal")]
    if fatal:
        error = str(fatal[0].data.get("error"))
        checks.append(Check(CheckKind.CALL, None, "call", False, f"the call failed: {error}"))
    return checks


@dataclass(frozen=True)
class _Context:
    scenario: Scenario
    judge: Judge | None


Grader = Callable[[Expectation, int, CallRecord, _Context], list[Check]]


def _tool_calls(exp: Expectation, turn: int, record: CallRecord, _c: _Context) -> list[Check]:
    window = record.turn_window(turn)
    made = [
        (str(e.data.get("name")), _args(e.data.get("arguments")))
        for e in record.of(EventKind.TOOL_CALL_STARTED, window.start_ms, window.end_ms)
    ]
    shown = ", ".join(f"{name}({args})" for name, args in made) or "no call"
    if exp.absent or exp.calls == ():
        ok = not made
        return [_check(CheckKind.TOOL_CALLS, turn, exp, ok, f"must not call; made: {shown}")]
    wanted = exp.calls or ()
    missing = [c for c in wanted if not any(_call_matches(c, n, a) for n, a in made)]
    if not wanted:
        ok = bool(made)
        return [_check(CheckKind.TOOL_CALLS, turn, exp, ok, f"a call expected; made: {shown}")]
    said = "; ".join(f"{c.name}({dict(c.args or {})})" for c in missing)
    evidence = f"made: {shown}" + (f"; missing: {said}" if missing else "")
    return [_check(CheckKind.TOOL_CALLS, turn, exp, not missing, evidence)]


def _call_matches(expected: ExpectedCall, name: str, args: Mapping[str, Any]) -> bool:
    if expected.name != name:
        return False
    return all(_same(value, args.get(key)) for key, value in (expected.args or {}).items())


def _same(expected: Any, actual: Any) -> bool:
    """Argument values match as a listener would: text ignoring case and spacing."""
    if isinstance(expected, str) and isinstance(actual, str):
        return " ".join(expected.lower().split()) == " ".join(actual.lower().split())
    return bool(expected == actual)


def _args(raw: Any) -> Mapping[str, Any]:
    import json

    if isinstance(raw, Mapping):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _response(exp: Expectation, turn: int, record: CallRecord, ctx: _Context) -> list[Check]:
    window = record.reply_window(turn)
    text = record.text_between(window.start_ms, window.end_ms)
    first = _first_audio(record, window)
    if exp.absent:
        ok = first is None and not text
        return [_check(CheckKind.EVENT, turn, exp, ok, f"no reply expected; heard {text!r}")]
    checks = [_latency(exp, turn, record, window, first)]
    if exp.max_gap_ms is not None:
        checks.append(_gaps(exp, turn, record, window, exp.max_gap_ms))
    quoted = repr(text) if text else "no reply text"
    if exp.text_contains is not None:
        ok = _normal(exp.text_contains) in _normal(text)
        checks.append(
            _check(CheckKind.TEXT, turn, exp, ok, f"contains {exp.text_contains!r}? {quoted}")
        )
    if exp.text_excludes is not None:
        ok = _normal(exp.text_excludes) not in _normal(text)
        checks.append(
            _check(CheckKind.TEXT, turn, exp, ok, f"excludes {exp.text_excludes!r}? {quoted}")
        )
    if exp.matches is not None:
        ok = exp.matches.search(text) is not None
        pattern = exp.matches.pattern
        checks.append(_check(CheckKind.TEXT, turn, exp, ok, f"matches /{pattern}/? {quoted}"))
    if exp.criterion is not None:
        checks.append(_judged(exp, turn, text, ctx))
    return checks


def _latency(
    exp: Expectation, turn: int, record: CallRecord, window: Span, first: float | None
) -> Check:
    limit = exp.within_ms if exp.within_ms is not None else DEFAULT_WITHIN_MS
    if first is None:
        return _check(CheckKind.LATENCY, turn, exp, False, "the bot never answered")
    waited = first - window.start_ms
    evidence = f"first bot audio {waited:.0f} ms after the line ended (limit {limit} ms)"
    return _check(CheckKind.LATENCY, turn, exp, waited <= limit, evidence)


def _gaps(exp: Expectation, turn: int, record: CallRecord, window: Span, limit: int) -> Check:
    spans = [s for s in record.bot_audio if window.start_ms <= s.start_ms < window.end_ms]
    gaps = [(b.start_ms - a.end_ms, a.end_ms) for a, b in itertools.pairwise(spans)]
    worst = max(gaps, default=(0.0, 0.0))
    evidence = (
        f"longest silence inside the reply {worst[0]:.0f} ms at {worst[1] / 1000:.1f} s "
        f"(limit {limit} ms, {len(spans)} stretches of audio)"
    )
    return _check(CheckKind.LATENCY, turn, exp, worst[0] <= limit, evidence)


def _first_audio(record: CallRecord, window: Span) -> float | None:
    starts = [s.start_ms for s in record.bot_audio if window.start_ms <= s.start_ms < window.end_ms]
    return min(starts, default=None)


def _judged(exp: Expectation, turn: int, text: str, ctx: _Context) -> Check:
    assert exp.criterion is not None
    if ctx.judge is None:
        return _check(CheckKind.JUDGE, turn, exp, None, "not judged: no --judge given")
    conversation = [{"role": "user", "content": t.text} for t in ctx.scenario.turns[: turn + 1]]
    try:
        verdict = ctx.judge.judge(exp.criterion, text, conversation)
    except VoxpipeError as exc:  # a judge in trouble grades nothing, and says why
        return _check(CheckKind.JUDGE, turn, exp, None, f"not judged: {exc}")
    evidence = f"{exp.criterion!r} on {text!r}: {verdict.reason}"
    return _check(CheckKind.JUDGE, turn, exp, verdict.passed, evidence)


def _simulated(sim: Simulation, record: CallRecord, judge: Judge | None) -> list[Check]:
    """A simulated caller's call: it hung up within its turns, the measures, the success."""
    turns = record.caller_turns or ()
    said = [t for t in turns if t.text]
    ending = next((t for t in turns if t.hung_up), None)
    failed = next((t for t in turns if t.error), None)
    if failed is not None:
        evidence = f"the persona LLM failed on turn {turns.index(failed) + 1}: {failed.error}"
        checks = [Check(CheckKind.CALL, None, "persona", False, evidence)]
    elif ending is None:
        evidence = f"the caller used all {len(turns)} of {sim.max_turns} turns and never hung up"
        checks = [Check(CheckKind.CALL, None, "max_turns", False, evidence)]
    else:
        claim = {True: "reached", False: "not reached", None: "not said"}[ending.success]
        evidence = (
            f"the caller hung up after {len(said)} lines (its goal {claim}: {ending.reason!r})"
        )
        checks = [Check(CheckKind.CALL, None, "max_turns", True, evidence)]
    if sim.turns_range is not None:
        low, high = sim.turns_range
        ok = (low is None or len(said) >= low) and (high is None or len(said) <= high)
        bounds = f"{low if low is not None else '-'}..{high if high is not None else '-'}"
        checks.append(
            Check(CheckKind.EVENT, None, "metric turns", ok, f"{len(said)} lines (range {bounds})")
        )
    if sim.calls is not None:
        checks.append(_all_calls(sim.calls, record))
    conversation = simulated_conversation(record)
    if sim.success is not None:
        if judge is None:
            checks.append(Check(CheckKind.JUDGE, None, "success", None, "not judged: no judge"))
        else:
            bot = " ".join(m["content"] for m in conversation if m["role"] == "assistant")
            try:
                verdict = judge.judge(sim.success, bot, conversation)
            except VoxpipeError as exc:
                checks.append(Check(CheckKind.JUDGE, None, "success", None, f"not judged: {exc}"))
            else:
                evidence = f"{sim.success!r}: {verdict.reason}"
                checks.append(Check(CheckKind.JUDGE, None, "success", verdict.passed, evidence))
    return checks


def simulated_conversation(record: CallRecord) -> list[dict[str, str]]:
    """The call as the judge reads it: each caller line, then what the bot said to it."""
    said = [t for t in record.caller_turns or () if t.text]  # one per line, in order
    conversation = []
    for index in range(len(record.lines)):
        if index < len(said):
            conversation.append({"role": "user", "content": said[index].text})
        reply = record.text_between(*_reply_span(record, index))
        if reply:
            conversation.append({"role": "assistant", "content": reply})
    return conversation


def _reply_span(record: CallRecord, index: int) -> tuple[float, float]:
    start = record.lines[index].end_ms
    end = record.lines[index + 1].start_ms if index + 1 < len(record.lines) else record.ended_ms
    return start, max(start, end) + 1


def _all_calls(wanted: tuple[ExpectedCall, ...], record: CallRecord) -> Check:
    """pipecat's function_calls measure: every listed call made, and no call not listed."""
    made = [
        (str(e.data.get("name")), _args(e.data.get("arguments")))
        for e in record.of(EventKind.TOOL_CALL_STARTED, 0, record.ended_ms + 1)
    ]
    shown = ", ".join(f"{name}({args})" for name, args in made) or "no call"
    missing = [c for c in wanted if not any(_call_matches(c, n, a) for n, a in made)]
    listed = {c.name for c in wanted}
    extra = [name for name, _ in made if name not in listed]
    problems = [f"missing {c.name}({dict(c.args or {})})" for c in missing]
    problems += [f"not listed: {name}" for name in extra]
    evidence = f"made: {shown}" + (f"; {'; '.join(problems)}" if problems else "")
    return Check(CheckKind.TOOL_CALLS, None, "metric function_calls", not problems, evidence)


def _barge_in(exp: Expectation, turn: int, record: CallRecord, _c: _Context) -> list[Check]:
    """The bot stopped soon after the caller cut in, and kept only the words that were heard."""
    line = record.lines[turn]
    cut_reply = next(
        (s for s in record.bot_audio if s.start_ms <= line.start_ms < s.end_ms + 100), None
    )
    if cut_reply is None:
        return [_check(CheckKind.BARGE_IN, turn, exp, False, "the bot was not speaking")]
    if exp.absent:
        ok = cut_reply.end_ms >= line.end_ms
        evidence = f"bot audio went on {cut_reply.end_ms - line.start_ms:.0f} ms into the line"
        return [_check(CheckKind.BARGE_IN, turn, exp, ok, f"not to be cut: {evidence}")]
    limit = exp.stop_within_ms if exp.stop_within_ms is not None else DEFAULT_STOP_WITHIN_MS
    stopped = cut_reply.end_ms - line.start_ms
    checks = [
        _check(
            CheckKind.BARGE_IN,
            turn,
            exp,
            stopped <= limit,
            f"bot audio stopped {stopped:.0f} ms after the caller began (limit {limit} ms)",
        )
    ]
    checks.append(_truncation(exp, turn, record, cut_reply))
    return checks


def _truncation(exp: Expectation, turn: int, record: CallRecord, cut_reply: Span) -> Check:
    cut = record.of(EventKind.ITEM_TRUNCATED, cut_reply.start_ms, record.ended_ms + 1)
    if not cut:
        return _check(CheckKind.BARGE_IN, turn, exp, False, "the reply was never truncated")
    heard = _heard_count(turn, record, cut_reply)
    if heard is None or record.contexts is None:
        why = "the voice's words cannot be counted" if record.contexts else "no brain context"
        return _check(CheckKind.BARGE_IN, turn, exp, None, f"truncation not graded: {why}")
    count, how = heard
    kept = _kept_text(record.contexts, cut[0].t_ms)
    if kept is None:
        return _check(CheckKind.BARGE_IN, turn, exp, False, "no context after the cut")
    words = _words(kept) if record.bot_words is None else kept.split()
    ok = -SHORT_SLACK <= len(words) - count <= WORD_SLACK
    evidence = (
        f"the caller heard {count} words{how}; the context kept {len(words)}: {kept!r} "
        f"(truncated at {cut[0].data.get('audio_end_ms')} ms)"
    )
    return _check(CheckKind.BARGE_IN, turn, exp, ok, evidence)


def _heard_count(turn: int, record: CallRecord, cut_reply: Span) -> tuple[int, str] | None:
    """How many words of the cut reply the caller heard, and how they were counted."""
    if record.bot_words is not None:
        # The cut reply began after the caller's previous line (a stretch of its audio can
        # be split by a late chunk under load, so not from the stretch's own start).
        since = record.lines[turn - 1].end_ms if turn > 0 else 0.0
        return len([w for w in record.bot_words if since <= w.start_ms < cut_reply.end_ms]), ""
    heard = next((h for h in record.heard_text or () if h.turn == turn), None)
    if heard is None:
        return None
    return len(_words(heard.text)), f" (the local STT heard {heard.text!r})"


def _words(text: str) -> list[str]:
    """Words of a transcript or a reply, a number's digits as one ('10-15': two), so the
    STT's '9' and the reply's '9' count alike; punctuation is not a word."""
    return re.findall(r"[A-Za-z']+|\d+", text)


def _kept_text(contexts: tuple[BrainContext, ...], cut_ms: float) -> str | None:
    """The cut reply as the brain saw it next: the newest spoken assistant message of the
    first context after the cut (the new reply is not in it yet)."""
    after = [c for c in contexts if c.t_ms >= cut_ms]
    if not after:
        return None
    spoken = [
        m.get("content")
        for m in after[0].messages
        if m.get("role") == "assistant" and isinstance(m.get("content"), str)
    ]
    return str(spoken[-1]) if spoken else None


def _guardrail(exp: Expectation, turn: int, record: CallRecord, _c: _Context) -> list[Check]:
    window = record.turn_window(turn)
    trips = record.of(EventKind.GUARDRAIL_TRIPPED, window.start_ms, window.end_ms)
    if exp.policy is not None:
        trips = [t for t in trips if t.data.get("policy") == exp.policy]
    seen = dict.fromkeys(f"{t.data.get('policy')}: {t.data.get('span')!r}" for t in trips)
    shown = f"{len(trips)}x " + ", ".join(seen) if trips else "none"
    ok = not trips if exp.absent else bool(trips)
    wanted = "no trip" if exp.absent else f"a trip of {exp.policy or 'any policy'}"
    return [_check(CheckKind.GUARDRAIL, turn, exp, ok, f"{wanted}; tripped: {shown}")]


def _cost(exp: Expectation, turn: int, record: CallRecord, _c: _Context) -> list[Check]:
    total, unknown = Decimal(0), 0
    for event in record.of(EventKind.COST, 0, record.ended_ms + 1):
        try:
            total += Decimal(str(event.data.get("usd")))
        except InvalidOperation:
            unknown += 1
    if exp.max_usd is None:
        return [_check(CheckKind.COST, turn, exp, None, f"cost ${total} (no max_usd)")]
    ok = total <= Decimal(str(exp.max_usd)) and unknown == 0
    evidence = f"call cost ${total} (limit ${exp.max_usd}; {unknown} responses unpriced)"
    return [_check(CheckKind.COST, turn, exp, ok, evidence)]


_EVENT_KINDS = {
    ExpectKind.BOT_STARTED_SPEAKING: EventKind.BOT_STARTED_SPEAKING,
    ExpectKind.BOT_STOPPED_SPEAKING: EventKind.BOT_STOPPED_SPEAKING,
    ExpectKind.USER_STARTED_SPEAKING: EventKind.USER_STARTED_SPEAKING,
    ExpectKind.USER_STOPPED_SPEAKING: EventKind.USER_STOPPED_SPEAKING,
    ExpectKind.USER_TRANSCRIPTION: EventKind.USER_TRANSCRIPT,
}


def _event(exp: Expectation, turn: int, record: CallRecord, _c: _Context) -> list[Check]:
    window = record.turn_window(turn)
    events = record.of(_EVENT_KINDS[exp.kind], window.start_ms, window.end_ms)
    if exp.absent:
        return [_check(CheckKind.EVENT, turn, exp, not events, f"{len(events)} seen, none wanted")]
    limit = exp.within_ms if exp.within_ms is not None else DEFAULT_WITHIN_MS
    anchor = record.lines[turn].end_ms if exp.kind.value.startswith("bot") else window.start_ms
    timely = [e for e in events if e.t_ms - anchor <= limit]
    if exp.text_contains is not None:
        timely = [e for e in timely if _normal(exp.text_contains) in _normal(e.data.get("text"))]
    evidence = f"{len(timely)} of {len(events)} {exp.kind.value} within {limit} ms"
    return [_check(CheckKind.EVENT, turn, exp, bool(timely), evidence)]


def _check(kind: CheckKind, turn: int, exp: Expectation, ok: bool | None, evidence: str) -> Check:
    return Check(kind, turn + 1, exp.where, ok, evidence)


def _normal(text: Any) -> str:
    return " ".join(re.sub(r"[^\w' ]+", " ", str(text or "").lower()).split())


_GRADERS: dict[ExpectKind, Grader] = {
    ExpectKind.FUNCTION_CALL: _tool_calls,
    ExpectKind.RESPONSE: _response,
    ExpectKind.BOT_INTERRUPTED: _barge_in,
    ExpectKind.GUARDRAIL_TRIPPED: _guardrail,
    ExpectKind.COST: _cost,
    **dict.fromkeys(_EVENT_KINDS, _event),
}
