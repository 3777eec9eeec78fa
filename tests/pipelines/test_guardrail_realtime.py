"""The guardrail tap in the realtime graph, against voxpipe's realtime server.

The scripted brain says a sentence with a deny-listed word, word by word
(each word's transcript just before its audio, streamed faster than real
time, as a real service does). The tap reads the transcript, trips, and the
caller never hears the word: the item is truncated at what was played and the
brain says the safe line as its next response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from voxpipe.frames import GuardrailTrippedFrame
from voxpipe.guardrails import DenyPolicy
from voxpipe.pipelines.graph import VoiceGraph
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.guardrails.realtime import RealtimeSafeLine
from voxpipe.processors.guardrails.tap import GuardrailTap
from voxpipe.processors.realtime import CallEvent, ItemTruncated, RealtimeService, ResponseCreated
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    ServerConfig,
    SyntheticVoice,
    running_realtime_server,
)

API_KEY = "test-key"
SAFE = "Sorry, I can't share that."
UNSAFE = (
    "Thanks for calling the pharmacy today. Let me look that up for you. "
    "Your account password is pineapple, and it never changes."
)


def word_starts_ms(text: str, voice: SyntheticVoice) -> dict[str, float]:
    """Where each word's audio starts in the response (the synthetic voice is exact)."""
    starts: dict[str, float] = {}
    at = 0.0
    for word in text.split():
        starts.setdefault(word.strip(".,").lower(), at)
        at += voice.ms_per_char * len(word) + 40
    return starts


@dataclass
class RealtimeGuardedCall:
    transport: FileTransport
    graph: VoiceGraph
    service: RealtimeService
    tap: GuardrailTap
    events: list[CallEvent]
    tripped: asyncio.Event

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def played_ms(self, item_id: str) -> float:
        return sum(w.duration_ms for w in self.transport.written if w.utterance == item_id)

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - reads the transport's record
                await asyncio.sleep(0.05)


@asynccontextmanager
async def guarded_call(
    make_speech: Any, tmp_path: Path, script: list[str], tap: GuardrailTap
) -> AsyncIterator[RealtimeGuardedCall]:
    question, _ = sf.read(str(make_speech("What is my password?", lead_ms=300, tail_ms=0)))
    recording = tmp_path / "caller.wav"
    sf.write(str(recording), np.concatenate([question, np.zeros(16_000 * 12)]), 16_000)
    brain = ScriptedBrain(script, pace=4.0)
    async with running_realtime_server(config=ServerConfig(api_key=API_KEY), brain=brain) as srv:
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=srv.realtime_url, api_key=API_KEY, tap=tap
        )
        service = graph.brain
        assert isinstance(service, RealtimeService)
        tap.set_safe_line_speaker(RealtimeSafeLine(service))
        events: list[CallEvent] = []
        tripped = asyncio.Event()

        @service.event_handler("on_call_event")
        async def _on_event(_service: RealtimeService, event: CallEvent) -> None:
            events.append(event)

        @tap.event_handler("on_guardrail_tripped")
        async def _on_trip(_tap: GuardrailTap, _frame: GuardrailTrippedFrame) -> None:
            tripped.set()

        async with CallSession(graph.pipeline, end_timeout_secs=5):
            yield RealtimeGuardedCall(transport, graph, service, tap, events, tripped)


async def test_the_unsafe_word_is_never_played_and_the_safe_line_is(
    make_speech: Any, tmp_path: Path
) -> None:
    tap = GuardrailTap([DenyPolicy(words=["pineapple"])], safe_line=SAFE)
    safe_ms = sum(55 * len(w) + 40 for w in SAFE.split())
    async with guarded_call(make_speech, tmp_path, [UNSAFE, SAFE], tap) as call:
        await asyncio.wait_for(call.tripped.wait(), 30)
        await call.wait_for(lambda: call.of(ItemTruncated) and len(call.of(ResponseCreated)) > 1)
        first_item = call.of(ItemTruncated)[0].item_id

        def others() -> set[str]:
            return {w.utterance for w in call.transport.written if w.utterance} - {first_item}

        await call.wait_for(lambda: sum(call.played_ms(i) for i in others()) >= 0.9 * safe_ms)

    (trip,) = tap.trips
    assert trip.span == "pineapple"
    # The item was cut at what was played, before the word began.
    truncated = call.of(ItemTruncated)[0]
    word_at = word_starts_ms(UNSAFE, SyntheticVoice())["pineapple"]
    assert truncated.audio_end_ms < word_at
    assert call.played_ms(first_item) < word_at
    # The safe line was spoken as the brain's next response, and heard in full.
    (safe_id,) = others()
    assert call.played_ms(safe_id) >= 0.9 * safe_ms
    # The conversation holds what was heard, never the word.
    said = [str(m.get("content")) for m in call.graph.context.get_messages() if isinstance(m, dict)]
    assert not [text for text in said if "pineapple" in text.lower()], said
    assert any(SAFE in text for text in said), said
    # Nor does the memory a rollover or reconnect would seed the next session from.
    remembered = [turn.text for turn in call.service.call.record.memory.turns]
    assert not [text for text in remembered if "pineapple" in text.lower()], remembered
