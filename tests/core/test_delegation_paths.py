"""Where ``[delegate]`` is carried out, and what a call waits for while a backend works.

A ``[delegate]`` table a call would ignore is refused before the call, by
name (the file and the key); a recorded call does not end while the backend
it delegated to is still working, however long the filler has been quiet.
"""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

from voxpipe import DelegationConfigError
from voxpipe.agents import BrainPath
from voxpipe.delegation import (
    BackendAnswered,
    BackendAsked,
    BackendDropped,
    DelegateBackend,
    DelegationSettings,
    FillerSpoken,
    check_delegation,
)
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.pipelines.session import BotActivity

LOCAL = DelegationSettings(DelegateBackend.LOCAL)
OPENAI = DelegationSettings(DelegateBackend.OPENAI)


def refused(settings: DelegationSettings, path: BrainPath, **kwargs: bool) -> DelegationConfigError:
    with pytest.raises(DelegationConfigError) as raised:
        check_delegation(settings, "agent.toml", path, **kwargs)
    assert raised.value.path == "agent.toml"
    return raised.value


@pytest.mark.parametrize("path", list(BrainPath))
def test_either_path_delegates_to_either_backend(path: BrainPath) -> None:
    check_delegation(LOCAL, "agent.toml", path)
    check_delegation(OPENAI, "agent.toml", path, openai_key=True)
    # The chained slots matter to the chained path (and a fallback brain) only.
    check_delegation(LOCAL, "agent.toml", BrainPath.REALTIME, llm_slots=True)
    check_delegation(None, "agent.toml", BrainPath.REALTIME, agents=True)  # no table: no check


@pytest.mark.parametrize(
    ("flag", "named"),
    [("agents", "[agents]"), ("llm_slots", "[chained] llm"), ("fallback", "a fallback brain")],
)
def test_a_setting_that_would_bypass_the_backend_is_refused(flag: str, named: str) -> None:
    error = refused(LOCAL, BrainPath.CHAINED, **{flag: True})
    assert error.key == "delegate"
    assert f"cannot be combined with {named}" in str(error)


def test_the_openai_backend_without_a_key_is_refused_before_the_call() -> None:
    error = refused(OPENAI, BrainPath.CHAINED)
    assert error.key == "delegate.backend"
    assert "OPENAI_API_KEY" in (error.hint or "")


def activity_after(*frames: object) -> BotActivity:
    activity = BotActivity()
    for frame in frames:
        activity.note(frame)  # type: ignore[arg-type]
    return activity


def event(e: object) -> RealtimeCallEventFrame:
    return RealtimeCallEventFrame(event=e, at_ms=0.0)


def test_a_call_waits_for_the_backend_past_the_filler() -> None:
    asked = event(BackendAsked(1, joined=False))
    filler = event(FillerSpoken(1, "One moment.", 700.0))
    # The caller's turn, delegated; the filler is said and its audio ends: the
    # backend still works, so the call waits without a limit (as for a generation).
    during = activity_after(
        UserStoppedSpeakingFrame(),
        LLMFullResponseStartFrame(),
        LLMFullResponseEndFrame(),
        asked,
        filler,
        BotStartedSpeakingFrame(),
        BotStoppedSpeakingFrame(),
    )
    assert during.next_wait(quiet_secs=2.5, answer_secs=30.0) is None
    # The answer is in: the voice model owes its relay (the answer timeout, not quiet).
    during.note(event(BackendAnswered(1, 1500.0, filled=True)))  # type: ignore[arg-type]
    assert during.next_wait(quiet_secs=2.5, answer_secs=30.0) == 30.0
    # Without the delegation the same frames leave only the quiet to wait.
    plain = activity_after(UserStoppedSpeakingFrame(), BotStartedSpeakingFrame())
    plain.note(BotStoppedSpeakingFrame())
    assert plain.next_wait(quiet_secs=2.5, answer_secs=30.0) == 2.5


def test_a_dropped_delegation_owes_nothing() -> None:
    activity = activity_after(
        event(BackendAsked(1, joined=False)), event(BackendDropped(1)), BotStoppedSpeakingFrame()
    )
    assert activity.next_wait(quiet_secs=2.5, answer_secs=30.0) == 2.5


def test_a_caller_turn_whose_end_is_held_for_its_transcript_owes_an_answer() -> None:
    # The VAD heard the caller start; the turn's end waits for Whisper's transcript,
    # which under load takes longer than the quiet: the call is not over meanwhile.
    activity = activity_after(UserStartedSpeakingFrame())
    assert activity.next_wait(quiet_secs=2.5, answer_secs=30.0) == 30.0
    activity.note(UserStoppedSpeakingFrame())
    activity.note(BotStartedSpeakingFrame())
    activity.note(BotStoppedSpeakingFrame())
    assert activity.next_wait(quiet_secs=2.5, answer_secs=30.0) == 2.5
