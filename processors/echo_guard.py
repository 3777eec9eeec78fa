"""The echo guard's driver: caller audio that is only the bot's echo becomes silence.

Placed right after the transport's input, before any turn detection: the
Realtime server's VAD (the audio goes there next) and a local VAD in the user
aggregator both see silence where the caller's microphone only picked up the
bot. The decision is :class:`~voxpipe.echo.EchoGuard`'s; this processor feeds
it what the output plays and what the caller sends, on the output's clock.

    graph = build_call_graph(transport, mode, echo_guard=EchoGuardProcessor(transport.output()))
"""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.echo import CallerAudioJudged, EchoGuard, EchoGuardConfig, PlayedAudioSource, Verdict
from voxpipe.errors import ConfigError


class EchoGuardProcessor(FrameProcessor):
    """Silences caller audio the :class:`~voxpipe.echo.EchoGuard` judges to be echo.

    Args:
        output: the call's output transport; it reports the audio it plays
            (:class:`~voxpipe.echo.PlayedAudioSource`) and its clock.
        config: the guard's thresholds (default :class:`~voxpipe.echo.EchoGuardConfig`).

    Raises:
        ConfigError: ``output`` does not report the audio it plays.
    """

    def __init__(
        self, output: object, config: EchoGuardConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(output, PlayedAudioSource):
            raise ConfigError(
                f"{type(output).__name__} does not report the audio it plays, so the echo "
                "guard cannot tell the bot's echo from the caller",
                hint="use an output with voxpipe.transports.playback_reports.ReportsPlayback, "
                "or turn the echo guard off (echo_guard=None)",
            )
        self.guard = EchoGuard(config)
        self._now_ms = output.now_ms
        self.last: CallerAudioJudged | None = None
        output.report_audio_to(self.guard)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and direction is FrameDirection.DOWNSTREAM:
            self.last = self.guard.caller_audio(
                frame.audio, frame.sample_rate, self._now_ms(), frame.num_channels
            )
            if self.last.verdict is Verdict.ECHO:
                # In place: the frame keeps its id, by which the instruments know it.
                frame.audio = bytes(len(frame.audio))
        await self.push_frame(frame, direction)
