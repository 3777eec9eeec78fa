"""The call's own record of its conversation, fed from the provider's events.

A provider session forgets everything when it ends (reconnect, rollover), so
the call keeps what it needs to seed the next one in a
:class:`~voxpipe.call.rollover.CallMemory`: user turns once their audio is
committed (with the provider's transcript when it has one), the bot's turns
from its audio transcript (only the part the caller *heard*, when a reply was
cut), and tool results. It also knows which items live in the current
session, so pruning can delete old ones there.
"""

from __future__ import annotations

import dataclasses

from voxpipe.call.heard_text import TextDelta, heard_text
from voxpipe.call.rollover import CallMemory, Role, SessionSeed, Summariser, Turn, plan_seed

NO_TRANSCRIPT = "(spoke; no transcript)"
REMEMBERED_IDS = 1_024  # a repeat comes within a few turns, never a thousand items later


@dataclasses.dataclass(frozen=True)
class HeardAudio:
    """How much of a cut reply's audio the caller heard: ``played_ms`` of ``received_ms``.

    ``all_heard``: the reply brought no audio (a text reply), its text is all there is.
    """

    played_ms: float
    received_ms: float
    all_heard: bool = False


class ConversationRecord:
    """What the conversation held, item by item, across sessions."""

    def __init__(self, summariser: Summariser | None = None) -> None:
        self.memory = CallMemory(summariser)
        self.user_turns_committed = 0
        self.items_pruned = 0
        # Ids already remembered, to skip a repeated event; the newest REMEMBERED_IDS only.
        self._remembered: dict[str, None] = {}
        self._pending_user_items: list[str] = []  # committed, transcript not yet known
        self._live_items: list[str] = []  # items of the current session
        self._transcripts: dict[str, list[TextDelta]] = {}  # assistant item -> its deltas
        self._seed_items: set[str] = set()  # items we put in a new session ourselves

    # -- user turns ------------------------------------------------------------

    def user_committed(self, item_id: str) -> None:
        """``input_audio_buffer.committed``: a user turn exists, transcript or not."""
        self.user_turns_committed += 1
        self._pending_user_items.append(item_id)

    def user_transcribed(self, item_id: str, text: str) -> None:
        """The provider transcribed user item ``item_id``."""
        if item_id in self._pending_user_items:
            self._pending_user_items.remove(item_id)
        self._remember(Turn(Role.USER, text, item_id, is_audio=True))

    # -- the bot's turns ---------------------------------------------------------

    def assistant_text(self, item_id: str, delta: str, audio_ms: float = 0.0) -> None:
        """A delta of the transcript of assistant item ``item_id``.

        ``audio_ms`` is how much of the item's audio had arrived with it: it
        places the delta's words in the audio when the reply is cut.
        """
        self._transcripts.setdefault(item_id, []).append(TextDelta(audio_ms, delta))

    def assistant_done(self, item_id: str, heard: HeardAudio | None) -> None:
        """Assistant item ``item_id`` ended; ``heard`` says how much of its audio played if cut.

        The transcript runs ahead of the audio, so a cut reply's text holds
        words nobody heard (a guardrail trip's among them): only the words
        the caller heard are remembered (:func:`~voxpipe.call.heard_text.heard_text`:
        each of them, a partly heard one once half of it played), and the
        unheard tail never reaches a later seed.
        """
        deltas = self._transcripts.pop(item_id, [])
        self._flush_pending_user_turns()
        turn = _assistant_turn(item_id, deltas, heard)
        if turn is not None:
            self._remember(turn)

    def preview_seed(
        self, keep_verbatim_turns: int, cut: tuple[str, HeardAudio] | None = None
    ) -> SessionSeed | None:
        """The seed :meth:`session_ended` would give now, after ``cut`` ended so; nothing changes.

        ``cut``: an assistant item under way and how much of it was heard.
        None when the seed would fold turns into the summary: no cheap
        preview of that (the brain switch only gets ahead on the reply with it).
        """
        turns = list(self.memory.turns)
        pending = [i for i in self._pending_user_items if i not in self._remembered]
        turns += [Turn(Role.USER, NO_TRANSCRIPT, i, is_audio=True) for i in pending]
        if cut is not None and cut[0] not in self._remembered:
            turn = _assistant_turn(cut[0], self._transcripts.get(cut[0], []), cut[1])
            turns += [turn] if turn is not None else []
        if plan_seed(turns, keep_verbatim_turns).to_summarise:
            return None
        memory = self.memory
        return SessionSeed(memory.summary or "", tuple(turns), dict(memory.tool_state))

    def has_unfinished(self, item_id: str) -> bool:
        """Whether assistant item ``item_id`` has transcript but has not ended yet."""
        return item_id in self._transcripts

    def last_turn_is_user(self) -> bool:
        """Whether the caller spoke last (their turn has no answer yet)."""
        if self._pending_user_items:
            return True
        turns = self.memory.turns
        return bool(turns) and turns[-1].role is Role.USER

    def tool_answered(self, name: str, result: str) -> None:
        """A tool answered; its result lives outside the model."""
        self.memory.tool_state[name] = result

    # -- the current session's items ----------------------------------------------

    def item_added(self, item_id: str) -> None:
        """``conversation.item.added``: the item lives in the current session."""
        self._live_items.append(item_id)

    def seeded(self, item_id: str) -> None:
        """We created ``item_id`` in a new session from the seed (not a new turn)."""
        self._seed_items.add(item_id)

    def is_seed(self, item_id: str) -> bool:
        """Whether ``item_id`` is one of the seed items we created."""
        return item_id in self._seed_items

    def session_ended(self, keep_verbatim_turns: int) -> SessionSeed:
        """The session is gone: what seeds the next one."""
        self._live_items = []
        self._flush_pending_user_turns()
        return self.memory.seed(keep_verbatim_turns)

    def prune(self, keep_verbatim_turns: int) -> tuple[list[str], SessionSeed | None]:
        """Fold older turns into the summary.

        Returns the live items to delete from the session, and the new seed
        whose instructions carry the summary (None when nothing was folded).
        """
        self._flush_pending_user_turns(keep_last=1)  # the turn just committed stays live
        plan = self.memory.prune(keep_verbatim_turns)
        live = set(self._live_items)
        doomed = [i for i in plan.replaced_item_ids if i in live]
        gone = set(doomed)
        self._live_items = [i for i in self._live_items if i not in gone]
        self.items_pruned += len(doomed)
        if not plan.to_summarise:
            return doomed, None
        memory = self.memory
        return doomed, SessionSeed(memory.summary or "", (), dict(memory.tool_state))

    # -- internals -------------------------------------------------------------

    def _flush_pending_user_turns(self, keep_last: int = 0) -> None:
        # A user turn without a transcript still happened; the seed says so.
        cut = max(0, len(self._pending_user_items) - keep_last)
        for item_id in self._pending_user_items[:cut]:
            self._remember(Turn(Role.USER, NO_TRANSCRIPT, item_id, is_audio=True))
        self._pending_user_items = self._pending_user_items[cut:]

    def _remember(self, turn: Turn) -> None:
        if turn.item_id is not None:
            if turn.item_id in self._remembered:
                return
            self._remembered[turn.item_id] = None
            if len(self._remembered) > REMEMBERED_IDS:
                del self._remembered[next(iter(self._remembered))]
        self.memory.add(turn)


def _assistant_turn(item_id: str, deltas: list[TextDelta], heard: HeardAudio | None) -> Turn | None:
    """The bot's turn as remembered: all its words, or those heard of a cut one (None: none)."""
    if heard is None or heard.all_heard:
        text = "".join(d.text for d in deltas).strip()
    else:
        text = heard_text(deltas, heard.played_ms, heard.received_ms)
    if not text:
        return None
    suffix = " (interrupted)" if heard is not None else ""
    return Turn(Role.ASSISTANT, text + suffix, item_id, is_audio=True)
