"""What a :class:`~voxpipe.call.realtime_call.RealtimeCall` asks its driver to do.

Every input of the call core returns an ordered list of these commands; the
driver (the realtime service) carries them out in that order and decides
nothing itself. Each is a small frozen dataclass named for the action.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from voxpipe.call.events import CallEvent
from voxpipe.call.response_guard import ResponseRequest
from voxpipe.call.user_audio import SendUserAudio
from voxpipe.errors import VoxpipeError


@dataclasses.dataclass(frozen=True)
class SendEvent:
    """Send this client event (an ``openai.types.realtime`` model) on the current session."""

    event: Any


@dataclasses.dataclass(frozen=True)
class CreateResponse:
    """Send ``response.create`` for ``request``.

    ``set_up_conversation``: the call holds no conversation yet (no caller turn,
    no response), so the application's context goes in first (pipecat's
    conversation set-up). Once the session holds the conversation, sending the
    context again would put the whole history in a second time.
    """

    request: ResponseRequest
    set_up_conversation: bool = False


@dataclasses.dataclass(frozen=True)
class UpdateSession:
    """Send ``session.update`` again: the instructions now carry a new summary."""


@dataclasses.dataclass(frozen=True)
class SwitchAgent:
    """Another agent has the call: keep the service's own session settings in step.

    The core sends the handoff's ``session.update`` itself (instructions and
    tools only); this makes every later ``session.update`` the service sends
    (a reconnect's, a rollover's) carry ``instructions`` and ``tools`` too.
    ``tools`` are Realtime function tool objects.
    """

    agent: str
    instructions: str
    tools: tuple[dict[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Forward:
    """Let pipecat make its frames for this server event (by its ``type``)."""

    event_type: str


@dataclasses.dataclass(frozen=True)
class PlayAudio:
    """Push this reply audio toward the caller, in the session's output format.

    ``pcm`` is PCM16 at 24 kHz unless the call passes G.711 through
    (:attr:`~voxpipe.call.config.CallConfig.output_format`): then it is the
    provider's G.711 bytes, unchanged.

    ``new_item`` marks the first audio of an assistant item (the output's
    playback reports attribute what follows to it); ``new_response`` the first
    audio of a response (a TTS start).
    """

    response_id: str
    item_id: str
    pcm: bytes = dataclasses.field(repr=False)
    new_item: bool
    new_response: bool


@dataclasses.dataclass(frozen=True)
class ResponseAudioEnded:
    """A response whose audio played to its end is done (a TTS stop)."""

    response_id: str


@dataclasses.dataclass(frozen=True)
class StopOutput:
    """Interrupt the pipeline both ways now, so the output stops playing.

    Only for interruptions that did not arrive as an interruption frame
    already (the server's VAD, the application).
    """


@dataclasses.dataclass(frozen=True)
class EndResponseOutput:
    """The cut response's frames end here (close its LLM response, stop its metrics)."""


@dataclasses.dataclass(frozen=True)
class BroadcastUserSpeech:
    """Tell the pipeline the server's VAD heard the caller start (``started``) or stop."""

    started: bool


@dataclasses.dataclass(frozen=True)
class Publish:
    """Tell the application (``on_call_event``) and the timeline about ``event``."""

    event: CallEvent


@dataclasses.dataclass(frozen=True)
class ReportError:
    """A request failed but the call goes on: tell pipecat (a non-fatal error)."""

    message: str


@dataclasses.dataclass(frozen=True)
class OpenSession:
    """Connect a new socket after ``delay_ms``; mint a fresh secret first if ``refresh_secret``."""

    delay_ms: int
    refresh_secret: bool


@dataclasses.dataclass(frozen=True)
class CloseSession:
    """Close the current socket (it is dead, or being replaced); its close is not a failure."""


@dataclasses.dataclass(frozen=True)
class EndCall:
    """The call cannot go on: tell the application and stop the pipeline."""

    error: VoxpipeError


Command = (
    SendEvent
    | SendUserAudio
    | CreateResponse
    | UpdateSession
    | SwitchAgent
    | Forward
    | PlayAudio
    | ResponseAudioEnded
    | StopOutput
    | EndResponseOutput
    | BroadcastUserSpeech
    | Publish
    | ReportError
    | OpenSession
    | CloseSession
    | EndCall
)
