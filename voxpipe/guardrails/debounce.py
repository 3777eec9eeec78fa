"""The sans-I/O core of the guardrail tap: when to check, what to scan, what a failure means.

The tap feeds it transcript deltas and response ends; it answers with a
:class:`CheckDue` every ``every_chars`` new characters and once at the end of a
response. Pattern policies (:class:`IncrementalScanner`) are run through
:meth:`GuardrailDebouncer.scan`, which searches only the text added since that
policy's last scan plus its overlap, so the regex work over a whole response
is linear in its length. The final check scans everything once, which catches
a match longer than the overlap. Async policies get the whole text; whatever
they return (a verdict, an exception, a timeout, garbage) goes through
:meth:`GuardrailDebouncer.judge`, which applies the fail-open/closed choice
and counts each kind of failure.

A driver (the tap) looks like this; only the awaiting is its own::

    async def run(policy, check):                 # one task per claimed policy
        while check is not None:
            try:
                result = await asyncio.wait_for(policy.check(check.text), timeout)
            except TimeoutError:
                result = TIMED_OUT
            except Exception as exc:
                result = exc
            judgement = core.judge(check, policy.name, result)
            act(judgement)                        # interrupt if judgement.verdict.tripped
            check = judgement.follow_up

    check = core.on_delta(response_id, delta)     # or core.on_response_done(...)
    if check is not None:
        for scanner in scanners:                  # fast and synchronous
            act(core.scan(check, scanner))
        for policy in remote_policies:
            if core.start(check, policy.name):
                spawn(run(policy, check))

Building the text handed to a check copies it (a memory copy per check); the
expensive part, pattern matching, only ever sees new text.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from voxpipe.errors import ConfigError
from voxpipe.guardrails.policy import ALLOWED, FailMode, IncrementalScanner, Outcome, Verdict


class CheckFailure(enum.Enum):
    """Ways a policy can fail to give an answer."""

    RAISED = "raised"
    TIMED_OUT = "timed_out"
    GARBAGE = "garbage"  # returned something that is not a Verdict


class _TimedOut:
    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()
"""Pass to :meth:`GuardrailDebouncer.judge` when the driver's timeout fired."""


@dataclass(frozen=True)
class CheckDue:
    """A check the tap should run now on ``text`` (the whole response so far)."""

    response_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class Judgement:
    """The verdict the tap acts on, and the failure behind it if the policy failed."""

    policy: str
    verdict: Verdict
    failure: CheckFailure | None = None
    follow_up: CheckDue | None = None
    """A newer check of the same response that waited for this policy; run it next."""


@dataclass
class _Response:
    text: str = ""
    # Deltas since the last check: joined once per check, so a long response
    # costs one copy per check rather than one per delta.
    pending: list[str] = field(default_factory=list)
    length: int = 0
    checked_upto: int = 0
    tripped: bool = False
    scanned_upto: dict[str, int] = field(default_factory=dict)


class GuardrailDebouncer:
    """Per-call debounce and bookkeeping for the guardrail tap (no I/O, no clock)."""

    def __init__(self, every_chars: int = 100, fail: FailMode = FailMode.CLOSED) -> None:
        if every_chars < 1:
            raise ConfigError(f"guardrail every_chars must be at least 1, got {every_chars}")
        self.every_chars = every_chars
        self.fail = fail
        self.checks = 0
        self.trips = 0
        self.chars_scanned = 0  # regex work done by scanners, to prove it stays linear
        self.failures: Counter[CheckFailure] = Counter()
        self.coalesced = 0  # checks folded into a later one while a policy was busy
        self.ignored_deltas = 0  # non-text content handed in by mistake
        self._responses: dict[str, _Response] = {}
        # (response, async policy) in flight -> the newest check waiting for it.
        self._busy: dict[tuple[str, str], CheckDue | None] = {}

    def on_delta(self, response_id: str, delta: str) -> CheckDue | None:
        """Add transcript text; a check is due once ``every_chars`` new characters arrived."""
        if not isinstance(delta, str):  # audio or a frame object: nothing to read
            self.ignored_deltas += 1
            return None
        response = self._responses.setdefault(response_id, _Response())
        if response.tripped or not delta:
            return None
        response.pending.append(delta)
        response.length += len(delta)
        if response.length - response.checked_upto < self.every_chars:
            return None
        return self._due(response_id, response, final=False)

    def on_response_done(self, response_id: str) -> CheckDue | None:
        """The response ended: one last check on the whole text, unless empty or tripped."""
        response = self._responses.pop(response_id, None)
        if response is None or response.tripped or not response.length:
            return None
        return self._due(response_id, response, final=True)

    def discard(self, response_id: str) -> None:
        """Forget a response that will never end normally (e.g. dropped on a reconnect)."""
        self._responses.pop(response_id, None)
        for key in [key for key in self._busy if key[0] == response_id]:
            del self._busy[key]

    @property
    def open_responses(self) -> int:
        """Responses with text held; stays small when every response ends or is discarded."""
        return len(self._responses)

    def is_tripped(self, response_id: str) -> bool:
        """True once a check tripped this response (later deltas are ignored)."""
        response = self._responses.get(response_id)
        return response is not None and response.tripped

    def scan(self, check: CheckDue, scanner: IncrementalScanner) -> Judgement:
        """Run a pattern policy over the new part of ``check.text`` (all of it when final)."""
        response = self._responses.get(check.response_id)
        done = response.scanned_upto.get(scanner.name, 0) if response and not check.final else 0
        start = max(0, done - scanner.overlap_chars)
        self.chars_scanned += len(check.text) - start
        try:
            result: object = scanner.scan(check.text, start)
        except Exception as exc:  # a policy bug must not end the call
            result = exc
        if response is not None:
            response.scanned_upto[scanner.name] = len(check.text)
        return self.judge(check, scanner.name, result)

    def start(self, check: CheckDue, policy: str) -> bool:
        """Claim an async policy for ``check``. False when the policy is still busy with
        this response: the check then waits, folded with any later one, and comes back
        as the ``follow_up`` of the running check's judgement (a final check is never
        dropped). This keeps one request per policy and response in flight."""
        key = (check.response_id, policy)
        if key not in self._busy:
            self._busy[key] = None
            return True
        waiting = self._busy[key]
        if waiting is not None:
            self.coalesced += 1
        self._busy[key] = check if waiting is None or not waiting.final else waiting
        return False

    def judge(self, check: CheckDue, policy: str, result: object) -> Judgement:
        """Turn what a policy returned (Verdict, exception, :data:`TIMED_OUT`, other) into
        the verdict to act on, applying the fail mode; records trips on the response.
        Call it for every check, started or scanned, exactly once."""
        failure: CheckFailure | None = None
        if isinstance(result, Verdict) and isinstance(result.outcome, Outcome):
            verdict = result
        else:
            failure = _failure_of(result)
            self.failures[failure] += 1
            verdict = _failed_verdict(self.fail, policy, failure)
        if verdict.tripped:
            self._record_trip(check.response_id)
        follow_up = self._busy.pop((check.response_id, policy), None)
        if follow_up is not None:
            self._busy[(check.response_id, policy)] = None  # claimed by the follow-up
        return Judgement(policy, verdict, failure, follow_up)

    def _record_trip(self, response_id: str) -> None:
        self.trips += 1
        response = self._responses.get(response_id)
        if response is not None:
            response.tripped = True
        for key in self._busy:
            if key[0] == response_id:
                self._busy[key] = None  # a stopped response needs no more checks

    def _due(self, response_id: str, response: _Response, *, final: bool) -> CheckDue:
        if response.pending:
            response.text += "".join(response.pending)
            response.pending.clear()
        response.checked_upto = response.length
        self.checks += 1
        return CheckDue(response_id, response.text, final)


def _failure_of(result: object) -> CheckFailure:
    if result is TIMED_OUT:
        return CheckFailure.TIMED_OUT
    if isinstance(result, BaseException):
        return CheckFailure.RAISED
    return CheckFailure.GARBAGE


def _failed_verdict(fail: FailMode, policy: str, failure: CheckFailure) -> Verdict:
    if fail is FailMode.OPEN:
        return ALLOWED
    return Verdict.trip(f"{policy}:{failure.value}")
