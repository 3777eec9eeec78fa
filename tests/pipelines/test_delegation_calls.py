"""Supervisor delegation with honest filler, on the chained path, end to end.

A caller's questions (real speech, local Whisper) go to a voice model that
delegates each one (a loopback stand-in for OpenAI's chat: the paid remote
provider) through pipecat's ``LLMWithBackend``; local Piper/eSpeak speaks.
The backend is the real local LLM slowed by a delay (a slow backend), or
OpenAI's chat model (the stand-in again) answering after 0.1 s (a fast one)
or 1.5 s (a slow one).
The caller must hear exactly one filler per slow wait, before the answer,
worded differently each time, and none at all when the backend is fast; the
timeline's turn latency runs to the answer with the filler marked apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cued_caller import CuedCaller
from fake_openai_supervisor import API_KEY, Role, SupervisorChat, running_supervisor_chat
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe.delegation import (
    BackendAnswered,
    BackendAsked,
    DelegateBackend,
    DelegationSettings,
    FillerSpoken,
)
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.delegation import FillerConnector, backend_llm, delegating_llm
from voxpipe.processors.local.llm import LocalLLMService
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.timeline import EventKind, Timeline

FRONT = "You are Acme's voice assistant. Hand account questions to the backend."
BACKEND = (
    "You are Acme's accounts expert. The caller's balance is forty two dollars and "
    "their next bill is due on the fifth of May."
)
QUESTIONS = ("What is the balance on my account?", "When is my next bill due?")
FILLERS = ("One moment.", "Let me check that.")
# The local backend's answer took 33-58 s at load 7 on 2 cores (Qwen's prompt at ~1 s per
# token then); a wait is given 300 s, the module 900 s.
pytestmark = pytest.mark.timeout(900)
ANSWER_S = 300.0
SETTINGS = DelegationSettings(DelegateBackend.LOCAL, 700, FILLERS, BACKEND)


class SlowedLocalLLM(LocalLLMService):
    """The real local LLM, answering ``delay_s`` late (the slow backend)."""

    def __init__(self, delay_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    async def get_chat_completions(self, context: LLMContext) -> Any:  # type: ignore[override]
        await asyncio.sleep(self.delay_s)
        return await super().get_chat_completions(context)


class Heard(BaseObserver):
    """What was handed to the voice to say as it stands (``TTSSpeakFrame``: the fillers)."""

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if not data.first_push:
            return
        if isinstance(data.frame, TTSSpeakFrame):
            self.spoken.append(data.frame.text)


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = ANSWER_S) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 (polls the stand-in and the timeline)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def frontend(chat: SupervisorChat) -> OpenAILLMService:
    return OpenAILLMService(
        api_key=API_KEY,
        base_url=chat.url,
        settings=OpenAILLMService.Settings(model="m", system_instruction=FRONT),
    )


def answers_spoken(timeline: Timeline) -> list[Any]:
    """The timeline's turns that were answered with audio."""
    return [t for t in timeline.turns() if t.first_audio_ms is not None]


async def test_a_slow_backend_gets_one_filler_per_wait_then_the_answer_worded_anew(
    make_speech: Any,
) -> None:
    lines = [make_speech(q, lead_ms=1500, tail_ms=600) for q in QUESTIONS]
    caller = CuedCaller([Path(p) for p in lines])
    timeline, heard = Timeline(), Heard()
    async with running_supervisor_chat() as chat:
        brain = delegating_llm(
            frontend(chat), SETTINGS, backend=SlowedLocalLLM(1.5, instructions=BACKEND)
        )
        connector = brain.connector
        assert isinstance(connector, FillerConnector)
        graph = build_chained_pipeline(caller, llm=brain, openai_api_key="")
        observers = [TimelineObserver(timeline, caller.clock.now_ms), heard]
        async with CallSession(graph, observers=observers, end_timeout_secs=5):
            for n in (1, 2):
                await wait_for(lambda n=n: len(answers_spoken(timeline)) >= n, f"answer {n}")
                began = answers_spoken(timeline)[n - 1].first_audio_ms or 0.0
                await wait_for(lambda b=began: _quiet_after(timeline, b), f"answer {n}'s end")
                if n == 1:
                    caller.cue()  # the second question, once the first answer is heard

    events = connector.events
    asked = [e for e in events if isinstance(e, BackendAsked)]
    fillers = [e for e in events if isinstance(e, FillerSpoken)]
    answered = [e for e in events if isinstance(e, BackendAnswered)]
    assert [a.delegation for a in asked if not a.joined] == [1, 2]
    # Exactly one filler per wait, once past the threshold, then the answer (the backend
    # took 1.5 s plus the local model's own time).
    assert [f.delegation for f in fillers] == [1, 2]
    assert [(a.delegation, a.filled) for a in answered] == [(1, True), (2, True)]
    for filler, answer in zip(fillers, answered, strict=True):
        assert 700 <= filler.waited_ms < answer.waited_ms, (filler, answer)
        assert answer.waited_ms >= 1500, answer
    assert [f.wording for f in fillers] == list(FILLERS)  # the second worded differently
    assert heard.spoken == list(FILLERS)
    # The answers are the backend's, relayed by the voice model.
    relays = chat.relays()
    assert len(relays) == 2 and all(r.said for r in relays), chat.chats
    assert not chat.of(Role.BACKEND)  # the backend was the local LLM, not the stand-in
    turns = answers_spoken(timeline)
    assert len(turns) == 2, timeline.turns()
    for turn, relay in zip(turns, relays, strict=False):
        assert turn.filler_ms is not None and turn.first_audio_ms is not None
        # The filler was heard first; the turn's latency runs to the answer's audio.
        assert turn.filler_ms < turn.first_audio_ms
        assert turn.latency_ms is not None and turn.filler_latency_ms is not None
        assert turn.latency_ms > turn.filler_latency_ms
        assert relay.said in turn.replied
    kinds = [e.kind for e in timeline.events if e.kind in (EventKind.FILLER, EventKind.DELEGATION)]
    assert kinds.count(EventKind.FILLER) == 2


def _quiet_after(timeline: Timeline, began_ms: float) -> bool:
    quiet = timeline.of(EventKind.BOT_STOPPED_SPEAKING)
    return any(e.t_ms > began_ms for e in quiet)


@pytest.mark.parametrize(
    ("delay_s", "fillers"),
    [(0.1, ()), (1.5, FILLERS[:1])],
    ids=["fast-0.1s-no-filler", "slow-1.5s-one-filler"],
)
async def test_openai_backend_fills_only_a_wait_past_the_threshold(
    make_speech: Any, delay_s: float, fillers: tuple[str, ...]
) -> None:
    lines = [make_speech(QUESTIONS[0], lead_ms=1500, tail_ms=600)]
    caller = CuedCaller([Path(p) for p in lines])
    timeline, heard = Timeline(), Heard()
    async with running_supervisor_chat(backend_delay_s=delay_s) as chat:
        settings = DelegationSettings(DelegateBackend.OPENAI, 700, FILLERS, BACKEND)
        backend = backend_llm(settings, API_KEY, base_url=chat.url)
        brain = delegating_llm(frontend(chat), settings, backend=backend)
        connector = brain.connector
        assert isinstance(connector, FillerConnector)
        graph = build_chained_pipeline(caller, llm=brain, openai_api_key="")
        observers = [TimelineObserver(timeline, caller.clock.now_ms), heard]
        async with CallSession(graph, observers=observers, end_timeout_secs=5):
            await wait_for(lambda: len(answers_spoken(timeline)) >= 1, "the answer")
            began = answers_spoken(timeline)[0].first_audio_ms or 0.0
            await wait_for(lambda: _quiet_after(timeline, began), "the answer's end")

    (answered,) = [e for e in connector.events if isinstance(e, BackendAnswered)]
    said = [e for e in connector.events if isinstance(e, FillerSpoken)]
    assert tuple(f.wording for f in said) == fillers
    assert heard.spoken == list(fillers)  # nothing else was handed to the voice as it stands
    assert len(timeline.of(EventKind.FILLER)) == len(fillers)
    assert answered.filled == bool(fillers)
    assert answered.waited_ms >= delay_s * 1000
    if not fillers:
        assert answered.waited_ms < 700, answered
    assert len(chat.of(Role.BACKEND)) == 1  # OpenAI's chat model answered
    (turn,) = answers_spoken(timeline)
    assert turn.latency_ms is not None and chat.backend_answer in turn.replied
    if fillers:  # heard before the answer; the turn's latency runs to the answer
        assert turn.filler_ms is not None and turn.first_audio_ms is not None
        assert turn.filler_ms < turn.first_audio_ms
        assert said[0].waited_ms < answered.waited_ms
    else:
        assert turn.filler_ms is None


def test_the_openai_backend_needs_a_key() -> None:
    from voxpipe import DelegationConfigError

    with pytest.raises(DelegationConfigError) as raised:
        backend_llm(DelegationSettings(DelegateBackend.OPENAI), None)
    assert raised.value.key == "delegate.backend"
