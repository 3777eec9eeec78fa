"""Who is in a Daily room, whom the agent listens to, and when its call is over.

A room can hold several humans; the agent listens to one at a time (a
voice pipeline has one caller): the first human who joined, or the one named
(``listen_to``, matched against the name they joined with). When that person
leaves, the agent moves to the human who has been there longest (unless one
was named: then it waits for them), and whatever it was answering is
cancelled: the question's asker is gone. The first human to join is greeted,
once. The call ends when the last human leaves (``EndWhen.LAST_HUMAN_LEFT``,
the default), when the person listened to leaves (``LISTENED_LEFT``), or only
when something else ends it (``NEVER``); it never plays to an empty room.

Events go in (``joined``, ``left``) with the time; decisions come out as
frozen dataclasses the transport carries out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voxpipe.errors import ConfigError


class EndWhen(enum.Enum):
    """When a room's call ends on its own."""

    LAST_HUMAN_LEFT = "last_human_left"
    LISTENED_LEFT = "listened_left"  # the person the agent listens to left
    NEVER = "never"  # only max_secs, a failure or the operator ends it


@dataclass(frozen=True)
class Participant:
    """A human in the room, as Daily names them."""

    id: str
    name: str

    @classmethod
    def from_daily(cls, participant: Mapping[str, Any]) -> Participant:
        """From daily-python's participant mapping (``id``, ``info.userName``)."""
        info = participant.get("info") or {}
        return cls(id=str(participant["id"]), name=str(info.get("userName") or ""))

    @property
    def label(self) -> str:
        """How transcripts name them: their name, else their id."""
        return self.name or self.id


@dataclass(frozen=True)
class Greet:
    """Say hello to ``participant`` (the first human in the room; once per call)."""

    participant: Participant


@dataclass(frozen=True)
class ListenTo:
    """From now on, only ``participant``'s audio reaches the agent (None: nobody's)."""

    participant: Participant | None


@dataclass(frozen=True)
class CancelAnswer:
    """Stop whatever the agent is saying or about to say: its listener ``left``."""

    left: Participant


@dataclass(frozen=True)
class EndCall:
    """The call is over (``reason`` says why, ``at_ms`` when)."""

    reason: EndWhen
    at_ms: float


RoomDecision = Greet | ListenTo | CancelAnswer | EndCall


class Room:
    """The humans in one room and the agent's attention (see the module docstring)."""

    def __init__(
        self, *, listen_to: str | None = None, end_when: EndWhen = EndWhen.LAST_HUMAN_LEFT
    ) -> None:
        if listen_to is not None and not listen_to.strip():
            raise ConfigError("listen_to names a participant: it cannot be empty")
        self.listen_to = listen_to
        self.end_when = end_when
        self._present: dict[str, Participant] = {}  # in the order they joined
        self._listening: Participant | None = None
        self._greeted = False
        self._ended: EndCall | None = None

    @property
    def listening(self) -> Participant | None:
        """Whom the agent listens to now."""
        return self._listening

    @property
    def present(self) -> list[Participant]:
        """The humans in the room, longest there first."""
        return list(self._present.values())

    @property
    def empty(self) -> bool:
        """No human is in the room (audio out would play to nobody)."""
        return not self._present

    @property
    def ended(self) -> EndCall | None:
        """The end of the call, once decided."""
        return self._ended

    def hears(self, participant_id: str) -> bool:
        """Whether audio from ``participant_id`` goes to the agent."""
        return self._listening is not None and self._listening.id == participant_id

    def joined(self, participant: Participant, now_ms: float) -> list[RoomDecision]:
        """A human joined (a repeat of one already present changes nothing)."""
        if self._ended is not None or participant.id in self._present:
            return []
        self._present[participant.id] = participant
        out: list[RoomDecision] = []
        if self._listening is None and self._wanted(participant):
            self._listening = participant
            out.append(ListenTo(participant))
        if not self._greeted and self._listening is participant:
            self._greeted = True
            out.append(Greet(participant))
        return out

    def left(self, participant_id: str, now_ms: float) -> list[RoomDecision]:
        """A human left (one never seen changes nothing)."""
        gone = self._present.pop(participant_id, None)
        if self._ended is not None or gone is None:
            return []
        if self._listening is None or self._listening.id != gone.id:
            return self._end_if(EndWhen.LAST_HUMAN_LEFT, self.empty, now_ms)
        out: list[RoomDecision] = [CancelAnswer(gone)]
        ended = self._end_if(EndWhen.LISTENED_LEFT, True, now_ms) or self._end_if(
            EndWhen.LAST_HUMAN_LEFT, self.empty, now_ms
        )
        if ended:
            return out + ended
        self._listening = next((p for p in self._present.values() if self._wanted(p)), None)
        return [*out, ListenTo(self._listening)]

    def _wanted(self, participant: Participant) -> bool:
        return self.listen_to is None or participant.name == self.listen_to

    def _end_if(self, reason: EndWhen, condition: bool, now_ms: float) -> list[RoomDecision]:
        if reason is not self.end_when or not condition:
            return []
        self._ended = EndCall(reason, now_ms)
        self._listening = None
        return [self._ended]
