"""A paced caller who says each line only when the test cues it (no tests here).

A recording with fixed gaps between questions breaks on a loaded machine:
the local LLM's first token once took 11 s at load 4.7, so the second
question, 12 s after the first, cut the first answer before it was heard.
:class:`CuedCaller` plays its first line (or, with ``wait_first``, silence
until its cue), then live-line silence until the test calls
:meth:`CuedCaller.cue` (after the answer it waits for), then the next
line. It is voxpipe's eval caller (the same paced player, clock, capture
stamps, playback reports and call recording) with the test as its cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voxpipe.transports.audio_file import load_audio
from voxpipe.transports.eval_caller import LINE_RATE, EvalCaller


class GivenCues:
    """Line ``i`` may begin once the test has cued it (the eval caller's ``LineCues``)."""

    def __init__(self, count: int, *, wait_first: bool) -> None:
        self.count = count
        self.cued = 0 if wait_first else 1
        self.next_line = 0

    @property
    def done(self) -> bool:
        return self.next_line >= self.count

    def due(self, now_ms: float) -> bool:
        return not self.done and self.next_line < self.cued

    def bot_audio(self, at_ms: float, duration_ms: float) -> None:
        pass  # the test decides, not the bot's audio

    def line_said(self, end_ms: float) -> None:
        self.next_line += 1

    def hang_up(self) -> None:
        self.next_line = self.count


class CuedCaller(EvalCaller):
    """An eval caller whose caller says ``lines`` (audio files) one by one, each on cue."""

    def __init__(self, lines: Sequence[Path], *, wait_first: bool = False, **kwargs: Any) -> None:
        # The first line at once unless it waits for its cue (a call whose brain is
        # still connecting would otherwise lose it).
        self.test_cues = GivenCues(len(lines), wait_first=wait_first)
        pcm = [load_audio(path, LINE_RATE).pcm16 for path in lines]
        super().__init__(pcm, self.test_cues, **kwargs)

    def cue(self) -> None:
        """Say the next line now."""
        self.test_cues.cued += 1

    @property
    def started_ms(self) -> list[float | None]:
        """Where each line began in the caller's audio (ms since its input began; None: not yet).

        With ``sent_ms`` a test can act mid-line on what was said.
        """
        begun: list[float | None] = [at - self.input_started_ms for at in self.line_starts]
        return begun + [None] * (len(self.pcm_lines) - len(begun))
