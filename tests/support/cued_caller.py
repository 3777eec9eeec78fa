"""A paced caller who says each line only when the test cues it (no tests here).

A recording with fixed gaps between questions breaks on a loaded machine:
the local LLM's first token once took 11 s at load 4.7, so the second
question, 12 s after the first, cut the first answer before it was heard.
:class:`CuedCaller` plays its first line (or, with ``wait_first``, silence
until its cue), then live-line silence until the test calls
:meth:`CuedCaller.cue` (after the answer it waits for), then the next
line. Everything else is the file transport's: the same clock, capture
stamps, playback reports and call recording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipecat.transports.base_transport import TransportParams

from voxpipe.transports.audio_file import load_audio
from voxpipe.transports.file import CHUNK_MS, FileInputTransport, FileTransport


class _CuedInput(FileInputTransport):
    def __init__(self, caller: CuedCaller, params: Any, **kwargs: Any) -> None:
        super().__init__(caller, params, **kwargs)
        self._caller = caller

    async def _push(self, pcm: bytes, offset_ms: float) -> None:
        await super()._push(pcm, offset_ms)
        self._caller.sent_ms = offset_ms + CHUNK_MS

    async def _play(self) -> None:
        c = self._caller
        step = self.sample_rate * 2 * CHUNK_MS // 1000
        silence = bytes(step)
        c.input_started_ms = c.clock.now_ms()
        offset_ms = 0.0
        for i, path in enumerate(c.lines):
            while c.cued <= i:  # live-line silence until the test cues the line
                await self._push(silence, offset_ms)
                offset_ms += CHUNK_MS
            pcm = load_audio(path, self.sample_rate).pcm16
            pcm += bytes(-len(pcm) % step)
            c.started_ms[i] = offset_ms
            for at in range(0, len(pcm), step):
                await self._push(pcm[at : at + step], offset_ms)
                offset_ms += CHUNK_MS
            c.said[i].set()
        c.input_finished_ms = c.input_started_ms + offset_ms
        await c.call_input_finished()
        while True:
            await self._push(silence, offset_ms)
            offset_ms += CHUNK_MS


class CuedCaller(FileTransport):
    """A file transport whose caller says ``lines`` one by one, each on cue."""

    def __init__(self, lines: Sequence[Path], *, wait_first: bool = False, **kwargs: Any) -> None:
        super().__init__(lines[0], paced=True, **kwargs)
        self.lines = list(lines)
        # Lines the caller may say so far: the first at once unless it waits for its cue
        # (a call whose brain is still connecting would otherwise lose it).
        self.cued = 0 if wait_first else 1
        self.said = [asyncio.Event() for _ in self.lines]
        # Where each line began in the caller's audio (ms; None until it did), and how
        # much audio the caller has sent so far: a test can act mid-line on what was said.
        self.started_ms: list[float | None] = [None for _ in self.lines]
        self.sent_ms = 0.0
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=self.caller.sample_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=self.bot.sample_rate,
            audio_out_auto_silence=False,
            audio_out_end_silence_secs=0,
            audio_out_10ms_chunks=2,
        )  # the file transport's own
        self._cued_input = _CuedInput(self, params, name=f"{self.name}#cued-input")

    def input(self) -> FileInputTransport:  # type: ignore[override]
        return getattr(self, "_cued_input", None) or super().input()

    def cue(self) -> None:
        """Say the next line now."""
        self.cued += 1
