"""The tap's debounce core: check cadence, linear scanning, and bad-policy outcomes."""

from __future__ import annotations

import pytest

from voxpipe.errors import ConfigError
from voxpipe.guardrails.debounce import (
    TIMED_OUT,
    CheckDue,
    CheckFailure,
    GuardrailDebouncer,
)
from voxpipe.guardrails.deny import DenyPolicy
from voxpipe.guardrails.pii import PiiPolicy
from voxpipe.guardrails.policy import FailMode, IncrementalScanner, Outcome, Verdict


def _feed(core: GuardrailDebouncer, deltas: list[str], rid: str = "r1") -> list[CheckDue]:
    due = [core.on_delta(rid, d) for d in deltas]
    done = core.on_response_done(rid)
    return [c for c in [*due, done] if c is not None]


@pytest.mark.parametrize(
    ("every", "deltas", "checked_lengths"),
    [
        # 40-char deltas, every 100: checks at 120 and 240, final at 280.
        (100, ["x" * 40] * 7, [(120, False), (240, False), (280, True)]),
        # One huge delta: one check, then the final one.
        (100, ["x" * 1000], [(1000, False), (1000, True)]),
        # Short response: only the final check.
        (100, ["Hello ", "there."], [(12, True)]),
        # Cadence is configurable.
        (5, ["abc", "def", "g"], [(6, False), (7, True)]),
        # Empty deltas and an empty response: no check at all.
        (100, ["", ""], []),
    ],
)
def test_check_cadence(
    every: int, deltas: list[str], checked_lengths: list[tuple[int, bool]]
) -> None:
    checks = _feed(GuardrailDebouncer(every_chars=every), deltas)
    assert [(len(c.text), c.final) for c in checks] == checked_lengths


def test_each_check_gets_the_whole_response_so_far() -> None:
    core = GuardrailDebouncer(every_chars=3)
    assert core.on_delta("r1", "ab") is None
    check = core.on_delta("r1", "cd")
    assert check is not None and check.text == "abcd"


def test_responses_are_kept_apart() -> None:
    core = GuardrailDebouncer(every_chars=4)
    core.on_delta("r1", "aaa")
    check = core.on_delta("r2", "bbbb")
    assert check is not None and check.text == "bbbb"


def test_after_a_trip_the_response_is_not_checked_again() -> None:
    core = GuardrailDebouncer(every_chars=10)
    check = core.on_delta("r1", "x" * 10)
    assert check is not None
    judgement = core.judge(check, "deny", Verdict.trip("deny:x", 0, 1))
    assert judgement.verdict.tripped
    assert core.is_tripped("r1")
    assert core.on_delta("r1", "y" * 50) is None
    assert core.on_response_done("r1") is None
    assert core.trips == 1


def test_card_number_split_across_two_checks_is_caught_before_the_response_ends() -> None:
    core = GuardrailDebouncer(every_chars=20)
    policy = PiiPolicy()
    first = core.on_delta("r1", "Sure, your card is 4111 1111 ")
    assert first is not None
    assert not core.scan(first, policy).verdict.tripped
    second = core.on_delta("r1", "1111 1111, and that is all from me.")
    assert second is not None and not second.final
    verdict = core.scan(second, policy).verdict
    assert verdict.rule == "pii:card"
    assert second.text[verdict.start : verdict.end] == "4111 1111 1111 1111"


def test_match_longer_than_the_overlap_is_caught_by_the_final_check() -> None:
    core = GuardrailDebouncer(every_chars=10)
    policy = DenyPolicy(patterns=[r"begin\b.*\bfinish"], overlap_chars=5)
    verdicts = []
    for delta in ["begin the ", "long long ", "long plan ", "to finish."]:
        check = core.on_delta("r1", delta)
        if check is not None:
            verdicts.append(core.scan(check, policy).verdict.tripped)
    final = core.on_response_done("r1")
    assert final is not None
    assert verdicts == [False, False, False, False]
    assert core.scan(final, policy).verdict.tripped


def test_scanning_a_long_response_is_linear_not_quadratic() -> None:
    core = GuardrailDebouncer(every_chars=100)
    policies: list[IncrementalScanner] = [PiiPolicy(), DenyPolicy(words=["forbidden"])]
    sentence = "The weather today is mild with a light breeze from the west. "
    total = 0
    for _ in range(2000):  # ~120k characters
        total += len(sentence)
        check = core.on_delta("r1", sentence)
        if check is not None:
            assert not any(core.scan(check, p).verdict.tripped for p in policies)
    final = core.on_response_done("r1")
    assert final is not None
    for policy in policies:
        core.scan(final, policy)
    # Per scanner: each new character once, plus the overlap per check, plus
    # one full final scan. Quadratic rescans would be ~60 million characters.
    per_scanner = core.chars_scanned / len(policies)
    assert per_scanner < 6 * total
    assert core.checks > 1000


class _Boom(Exception):
    pass


# What a bad policy handed back; whether fail-open and fail-closed trip; the failure.
@pytest.mark.parametrize(
    ("result", "failure"),
    [
        (_Boom("policy bug"), CheckFailure.RAISED),
        (TIMED_OUT, CheckFailure.TIMED_OUT),
        (None, CheckFailure.GARBAGE),
        ("tripped", CheckFailure.GARBAGE),
        (Verdict("tripped"), CheckFailure.GARBAGE),  # type: ignore[arg-type]
        (True, CheckFailure.GARBAGE),
    ],
)
@pytest.mark.parametrize(("fail", "trips"), [(FailMode.OPEN, False), (FailMode.CLOSED, True)])
def test_bad_policy_results_follow_the_fail_mode_and_are_counted(
    result: object, failure: CheckFailure, fail: FailMode, trips: bool
) -> None:
    core = GuardrailDebouncer(every_chars=1, fail=fail)
    check = core.on_delta("r1", "hello")
    assert check is not None
    judgement = core.judge(check, "moderation", result)
    assert judgement.failure is failure
    assert judgement.verdict.tripped is trips
    assert core.failures == {failure: 1}
    assert core.is_tripped("r1") is trips
    if trips:
        assert judgement.verdict.rule == f"moderation:{failure.value}"


def test_a_scanner_that_raises_is_judged_not_propagated() -> None:
    class Broken:
        name = "broken"
        overlap_chars = 0

        def scan(self, text: str, start: int = 0) -> Verdict:
            raise RuntimeError("bug")

    core = GuardrailDebouncer(every_chars=1, fail=FailMode.OPEN)
    check = core.on_delta("r1", "hi")
    assert check is not None
    judgement = core.scan(check, Broken())
    assert judgement.failure is CheckFailure.RAISED
    assert judgement.verdict.outcome is Outcome.ALLOWED


def test_every_chars_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        GuardrailDebouncer(every_chars=0)


def test_discarded_responses_free_their_text() -> None:
    core = GuardrailDebouncer(every_chars=100)
    core.on_delta("r1", "partial answer")
    core.on_delta("r2", "another")
    assert core.open_responses == 2
    core.discard("r1")
    assert core.on_response_done("r1") is None
    done = core.on_response_done("r2")
    assert done is not None and done.text == "another"
    assert core.open_responses == 0


def _checks(core: GuardrailDebouncer, count: int) -> list[CheckDue]:
    checks = [core.on_delta("r1", "x" * 10) for _ in range(count)]
    assert all(c is not None for c in checks)
    return [c for c in checks if c is not None]


def test_a_busy_async_policy_gets_only_the_newest_waiting_check() -> None:
    core = GuardrailDebouncer(every_chars=10)
    c1, c2, c3, c4 = _checks(core, 4)
    assert core.start(c1, "moderation")
    assert not core.start(c2, "moderation")
    assert not core.start(c3, "moderation")  # c2 is folded into c3
    assert core.start(c1, "other")  # policies are independent
    follow_up = core.judge(c1, "moderation", Verdict.allow()).follow_up
    assert follow_up is c3
    assert not core.start(c4, "moderation")  # still busy with c3
    assert core.judge(c3, "moderation", Verdict.allow()).follow_up is c4
    assert core.judge(c4, "moderation", Verdict.allow()).follow_up is None
    assert core.coalesced == 1
    [c5] = _checks(core, 1)
    assert core.start(c5, "moderation")


def test_the_final_check_waits_but_is_never_dropped() -> None:
    # Fail-open, so the timed-out first check does not stop the response.
    core = GuardrailDebouncer(every_chars=10, fail=FailMode.OPEN)
    [c1] = _checks(core, 1)
    assert core.start(c1, "moderation")
    final = core.on_response_done("r1")
    assert final is not None
    assert not core.start(final, "moderation")
    follow_up = core.judge(c1, "moderation", TIMED_OUT).follow_up
    assert follow_up is final and follow_up.final


def test_a_trip_cancels_checks_waiting_on_that_response() -> None:
    core = GuardrailDebouncer(every_chars=10, fail=FailMode.OPEN)
    c1, c2 = _checks(core, 2)
    assert core.start(c1, "moderation")
    assert core.start(c1, "deny")
    assert not core.start(c2, "moderation")
    assert core.judge(c1, "deny", Verdict.trip("deny:x")).verdict.tripped
    assert core.judge(c1, "moderation", Verdict.allow()).follow_up is None
    assert core.on_delta("r1", "y" * 10) is None


@pytest.mark.parametrize("junk", [b"\x00\x01", None, 42])
def test_non_text_deltas_are_counted_and_ignored(junk: object) -> None:
    core = GuardrailDebouncer(every_chars=1)
    assert core.on_delta("r1", junk) is None  # type: ignore[arg-type]
    assert core.ignored_deltas == 1
    assert core.on_response_done("r1") is None
