"""When the scripted caller says its next line: a sans-I/O core, time passed in.

A recording with fixed gaps breaks on a loaded machine (an answer that comes
late is talked over), so the eval caller waits on the bot as a person does:
a line is said once the bot has answered the previous one and fallen quiet
for ``settle_ms`` (pipecat's harness also waits for the end of the sentence),
or ``delay_ms`` after a bot event named by ``send_after`` (a barge-in), or,
when the bot never answers, after ``answer_timeout_ms`` so the call goes on
and the graders see the silence. The driver (the eval caller transport) feeds
the bot's written audio and asks :meth:`CallerCues.due` every 20 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from voxpipe.evals.scenario import CueEvent, SendAfter


class LineCues(Protocol):
    """What a paced caller asks before each line: the driver feeds it, then asks ``due``.

    :class:`CallerCues` waits on the bot as a person does; a test may cue
    each line itself (``tests/support/cued_caller.py``).
    """

    next_line: int

    @property
    def done(self) -> bool: ...

    def due(self, now_ms: float) -> bool: ...

    def bot_audio(self, at_ms: float, duration_ms: float) -> None: ...

    def line_said(self, end_ms: float) -> None: ...

    def hang_up(self) -> None: ...


@dataclass
class _Audio:
    start_ms: float
    end_ms: float


class CallerCues:
    """Decides, line by line, when the caller may begin (time is an argument)."""

    def __init__(
        self,
        send_after: Sequence[SendAfter | None],
        *,
        settle_ms: float = 1_500,
        answer_timeout_ms: float = 30_000,
        join_ms: float = 30,
    ) -> None:
        self._send_after = list(send_after)
        self.settle_ms = settle_ms
        self.answer_timeout_ms = answer_timeout_ms
        self._join_ms = join_ms
        self._ready_ms: float | None = None
        self._said_until: float | None = None  # when the previous line ended
        self._audio: list[_Audio] = []
        self.next_line = 0

    def ready(self, now_ms: float) -> None:
        """The bot listens: the first line may begin (unless it waits for an event)."""
        self._ready_ms = now_ms

    def bot_audio(self, at_ms: float, duration_ms: float) -> None:
        """A chunk of the bot's audio reached the caller at ``at_ms``."""
        last = self._audio[-1] if self._audio else None
        if last is not None and at_ms - last.end_ms <= self._join_ms:
            last.end_ms = max(last.end_ms, at_ms + duration_ms)
        else:
            self._audio.append(_Audio(at_ms, at_ms + duration_ms))

    def line_said(self, end_ms: float) -> None:
        """The current line has been said to its end."""
        self._said_until = end_ms
        self.next_line += 1

    def hang_up(self) -> None:
        """The caller says nothing more (a simulated caller ended the call)."""
        self.next_line = len(self._send_after)

    @property
    def done(self) -> bool:
        return self.next_line >= len(self._send_after)

    def due(self, now_ms: float) -> bool:
        """Whether line ``next_line`` should begin now."""
        if self.done or self._ready_ms is None:
            return False
        since = self._said_until if self._said_until is not None else self._ready_ms
        rule = self._send_after[self.next_line]
        if rule is None:
            if self._said_until is None:
                return True  # the first line, once the bot listens
            return self._quiet_after_answer(since, now_ms, self.settle_ms)
        if rule.event is None:
            return now_ms >= since + rule.delay_ms
        if rule.event is CueEvent.BOT_STOPPED_SPEAKING:
            return self._quiet_after_answer(since, now_ms, max(rule.delay_ms, self._join_ms))
        started = next((a.start_ms for a in self._audio if a.start_ms >= since), None)
        if started is None:
            return now_ms >= since + self.answer_timeout_ms
        return now_ms >= started + rule.delay_ms

    def _quiet_after_answer(self, since: float, now_ms: float, quiet_ms: float) -> bool:
        answered = [a for a in self._audio if a.end_ms > since]
        if not answered:
            return now_ms >= since + self.answer_timeout_ms
        return now_ms >= answered[-1].end_ms + quiet_ms
