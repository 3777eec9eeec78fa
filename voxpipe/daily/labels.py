"""Which participant each caller turn of a room call came from.

In a room the agent hears one participant at a time, and the call's timeline
says whom from when (``listening_to`` events); a turn belongs to whoever was
listened to when it ended (or, for a turn known only by its transcript, when
that arrived).
"""

from __future__ import annotations

import bisect
from typing import Any

from voxpipe.timeline import EventKind, Timeline


def turn_speakers(timeline: Timeline) -> list[str | None]:
    """For each of ``timeline.turns()``, the label of the participant who spoke it."""
    changes = sorted(timeline.of(EventKind.LISTENING_TO), key=lambda e: e.t_ms)
    times = [e.t_ms for e in changes]
    transcripts = sorted(e.t_ms for e in timeline.of(EventKind.USER_TRANSCRIPT))
    speakers: list[str | None] = []
    for index, turn in enumerate(timeline.turns()):
        at = turn.user_stopped_ms
        if at is None and index < len(transcripts):
            at = transcripts[index]
        slot = bisect.bisect_right(times, at) - 1 if at is not None else -1
        speakers.append(None if slot < 0 else changes[slot].data.get("participant"))
    return speakers


def label_transcript(transcript: dict[str, Any], timeline: Timeline) -> dict[str, Any]:
    """``transcript.json``'s content with each turn's ``participant`` added."""
    turns = transcript.get("turns", [])
    for turn, speaker in zip(turns, turn_speakers(timeline), strict=False):
        turn["participant"] = speaker
    return transcript
