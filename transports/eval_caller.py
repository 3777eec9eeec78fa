"""The eval caller: a file transport whose caller says a scenario's lines when they are due.

The lines (16 kHz PCM16, synthesised by the local TTS or read from a
recording) are played paced, with live-line silence between them; when each
begins is decided by its cues (:class:`~voxpipe.evals.caller.LineCues`): in an
eval :class:`~voxpipe.evals.caller.CallerCues`, from the bot's audio as this
transport writes it; in a test, the test's own cue. A simulated caller's lines are not known
ahead: ``next_line`` makes each when it is due (an LLM answers the bot, the
voice speaks it) while the line carries silence, and returns None to hang up.
Everything else is the file transport's: the clock, capture stamps, playback
reports and ``call.wav``. After the last line the input reports itself
finished, so
:meth:`~voxpipe.pipelines.session.CallSession.run_until_input_ends` ends the
call once the bot has answered and fallen quiet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipecat.transports.base_transport import TransportParams

from voxpipe.evals.caller import LineCues
from voxpipe.evals.record import Span
from voxpipe.transports.audio_file import DecodedAudio
from voxpipe.transports.file import CHUNK_MS, FileInputTransport, FileTransport

LINE_RATE = 16_000


class _BotAudioSink:
    """Hears the output's playback reports: every chunk of bot audio as it plays."""

    def __init__(self, caller: EvalCaller) -> None:
        self._caller = caller

    def utterance_began(self, key: str, now_ms: float) -> None:
        pass

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        self._caller.bot_chunks.append((now_ms, duration_ms))
        self._caller.cues.bot_audio(now_ms, duration_ms)

    def playback_cut(self, now_ms: float) -> None:
        pass

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        pass

    def reports_cut_positions(self, within_ms: float) -> None:
        pass

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        pass


class _LinesInput(FileInputTransport):
    def __init__(self, caller: EvalCaller, params: Any, **kwargs: Any) -> None:
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
        pending: asyncio.Future[bytes | None] | None = None
        while pending is not None or not c.cues.done:  # a line being made is said
            if pending is None and c.cues.due(c.input_started_ms + offset_ms):
                pending = asyncio.ensure_future(c.line_pcm(c.cues.next_line))
            if pending is None or not pending.done():
                await self._push(silence, offset_ms)
                offset_ms += CHUNK_MS
                continue
            made, pending = pending.result(), None
            if made is None:  # the caller hangs up
                c.cues.hang_up()
                break
            pcm = made + bytes(-len(made) % step)
            start = c.input_started_ms + offset_ms
            c.line_starts.append(start)
            for at in range(0, len(pcm), step):
                await self._push(pcm[at : at + step], offset_ms)
                offset_ms += CHUNK_MS
            c.line_spans.append(Span(start, c.input_started_ms + offset_ms))
            c.cues.line_said(c.input_started_ms + offset_ms)
        c.input_finished_ms = c.input_started_ms + offset_ms
        await c.call_input_finished()
        while True:
            await self._push(silence, offset_ms)
            offset_ms += CHUNK_MS


class EvalCaller(FileTransport):
    """A file transport whose caller says ``pcm_lines`` (16 kHz PCM16) as ``cues`` decide."""

    def __init__(
        self,
        pcm_lines: Sequence[bytes],
        cues: LineCues,
        *,
        next_line: Callable[[int], Awaitable[bytes | None]] | None = None,
        **kwargs: Any,
    ) -> None:
        placeholder = DecodedAudio(None, b"", LINE_RATE, LINE_RATE, 1)  # type: ignore[arg-type]
        super().__init__(audio=placeholder, paced=True, in_sample_rate=LINE_RATE, **kwargs)
        self.pcm_lines = list(pcm_lines)
        self._next_line = next_line
        self.cues = cues
        self.line_spans: list[Span] = []  # each line said, on the call's clock
        self.line_starts: list[float] = []  # where each line began (before it ends)
        self.sent_ms = 0.0  # the caller's audio sent so far (ms since its input began)
        self.bot_chunks: list[tuple[float, float]] = []
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=LINE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=self.bot.sample_rate,
            audio_out_auto_silence=False,
            audio_out_end_silence_secs=0,
            audio_out_10ms_chunks=2,
        )  # the file transport's own
        self._lines_input = _LinesInput(self, params, name=f"{self.name}#lines")
        self.output().report_playback_to(_BotAudioSink(self))

    async def line_pcm(self, index: int) -> bytes | None:
        """Line ``index`` (16 kHz PCM16), made now if a ``next_line`` makes them; None: hang up."""
        if self._next_line is not None:
            return await self._next_line(index)
        return self.pcm_lines[index] if index < len(self.pcm_lines) else None

    def input(self) -> FileInputTransport:  # type: ignore[override]
        return getattr(self, "_lines_input", None) or super().input()
