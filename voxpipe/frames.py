"""voxpipe's own pipecat frames."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import DataFrame


@dataclass
class PlaybackMarkerFrame(DataFrame):
    """Marks where an utterance's audio begins in the output stream.

    Output transports queue data frames in order with audio, so this frame
    reaches the transport exactly before the utterance's first chunk; the
    transport's playback clock then attributes what follows to
    ``utterance_id`` (the assistant item id on the realtime path).
    """

    utterance_id: str = ""
