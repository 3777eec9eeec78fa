"""Sessions: open a fresh one (after a failure or before the cap), seeded from memory.

The call's own record (:class:`~voxpipe.call.CallMemory`) is fed from the
provider's events: user turns when their audio is committed (with the
transcript when the provider has one), the bot's turns from the audio
transcript, tool results from the function-call frames. A new session gets
the base instructions plus a summary of older turns and the tool state, and
the last few turns verbatim as conversation items; then the user audio held
during the switch (and the unfinished turn) is replayed by the
:class:`~voxpipe.call.UserAudioRelay`, so no user turn is lost.

Rollover itself is break-then-make between turns: the policy is asked on
every tick while the call is LISTENING and the caller is not talking.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from pipecat.services.openai.realtime import events as rt

from voxpipe.call import (
    CallState,
    CallTrigger,
    Role,
    RolloverDue,
    SessionSeed,
    Turn,
)
from voxpipe.processors.realtime.events import RolledOver
from voxpipe.processors.realtime.recovery import RecoveryMixin


class RolloverMixin(RecoveryMixin):
    """Seeds new sessions, feeds the call memory, and rolls over before the cap."""

    _seed: SessionSeed | None = None
    _rollover: tuple[RolloverDue, float] | None = None
    _user_speaking: bool = False
    _remembered: set[str] | None = None
    _pending_user_items: list[str] | None = None
    _live_items: list[str] | None = None
    user_turns_committed: int = 0
    items_pruned: int = 0

    async def send_client_event(self, event: rt.ClientEvent) -> None:
        """Send ``event``; a new session's ``session.update`` carries the seed's instructions."""
        if isinstance(event, rt.SessionUpdateEvent) and self._seed is not None:
            base = event.session.instructions or ""
            instructions = self._seed.instructions(base)
            session = event.session.model_copy(update={"instructions": instructions})
            event = event.model_copy(update={"session": session})
        await super().send_client_event(event)

    async def _drop_session(self) -> None:
        await super()._drop_session()
        self._live_items = []
        keep = self.rollover_policy.config.keep_verbatim_turns
        self._flush_pending_user_turns()
        self._seed = self.memory.seed(keep)

    async def send_seed_items(self) -> int:
        """Put the seed's verbatim turns into the new conversation; returns how many."""
        if self._seed is None:
            return 0
        sent = 0
        for turn in self._seed.verbatim:
            if turn.role is Role.TOOL or not turn.text.strip():
                continue
            user = turn.role is Role.USER
            item = rt.ConversationItem(
                type="message",
                role="user" if user else "assistant",
                content=[
                    rt.ItemContent(type="input_text" if user else "output_text", text=turn.text)
                ],
            )
            self._messages_added_manually[item.id] = True
            await self.send_client_event(rt.ConversationItemCreateEvent(item=item))
            sent += 1
        return sent

    async def session_ready(self) -> None:
        """``session.updated`` on a new socket: resume the call on it."""
        state = self.machine.state
        if state not in (CallState.IDLE, CallState.RECONNECTING, CallState.ROLLING_OVER):
            return
        seeded = await self.send_seed_items() if state is not CallState.IDLE else 0
        await self.fire(CallTrigger.SESSION_READY)
        self.rollover_policy.on_session_started(self._now())
        replay = self.relay.on_connected()
        for chunk in replay:
            await self._append_user_audio(chunk.audio)
        replayed_ms = sum(len(c.audio) for c in replay) // 48
        await self.carry_out(self.guard.flush())
        if state is CallState.RECONNECTING:
            await self.announce_reconnected(replayed_ms, seeded)
        elif state is CallState.ROLLING_OVER and self._rollover is not None:
            due, started = self._rollover
            self._rollover = None
            await self.publish(
                RolledOver(
                    due.reason,
                    due.session_age_ms,
                    due.input_tokens,
                    self.now_ms() - started,
                    replayed_ms,
                    seeded,
                )
            )

    async def _append_user_audio(self, audio: bytes, frame_id: int | None = None) -> None:
        """Append to the session's input; ``frame_id`` is the caller frame (None: replayed)."""
        self.sent_audio.on_append(len(audio), frame_id=frame_id, now_ms=self.now_ms())
        await self.send_client_event(rt.InputAudioBufferAppendEvent(audio=_b64(audio)))

    async def maybe_roll_over(self) -> None:
        """Roll over now if the policy says so (called on every tick)."""
        if self._recovering or self._failed or self._websocket is None:
            return
        idle = self.machine.state is CallState.LISTENING and not self._user_speaking
        due = self.rollover_policy.check(self._now(), idle=idle)
        if due is None or not self.machine.can(CallTrigger.ROLLOVER_STARTED):
            return
        await self.roll_over(due)

    async def roll_over(self, due: RolloverDue) -> None:
        """Move the call to a fresh session (between turns)."""
        logger.info(f"{self}: rolling over ({due.reason.value})")
        self._rollover = (due, self.now_ms())
        await self.fire(CallTrigger.ROLLOVER_STARTED)
        self._recovering = True  # the old socket's close is ours, not a failure
        try:
            await self._drop_session()
            signal = await self.open_socket()
        finally:
            self._recovering = False
        if signal is not None:
            self.begin_recovery(signal)

    # -- call memory -------------------------------------------------------------

    def remember_user_item(self, item_id: str) -> bool:
        """``input_audio_buffer.committed``: a user turn exists, transcript or not.

        Returns True when the policy says the live conversation is due a prune.
        """
        self.user_turns_committed += 1
        if self._pending_user_items is None:
            self._pending_user_items = []
        self._pending_user_items.append(item_id)
        return self.rollover_policy.on_user_turn() is not None

    def note_live_item(self, item_id: str) -> None:
        """``conversation.item.added``: the item lives in the current session."""
        if self._live_items is None:
            self._live_items = []
        self._live_items.append(item_id)

    async def prune_live_session(self) -> int:
        """Fold older turns into the summary; delete their items from the live session.

        Every response re-reads the whole conversation, so old audio items
        are replaced by text in the instructions (the summary); the last
        turns stay as they are. Returns how many items were deleted.
        """
        keep = self.rollover_policy.config.keep_verbatim_turns
        self._flush_pending_user_turns(keep_last=1)  # the turn just committed stays live
        plan = self.memory.prune(keep)
        live = set(self._live_items or [])
        doomed = [i for i in plan.replaced_item_ids if i in live]
        for item_id in doomed:
            await self.send_client_event(rt.ConversationItemDeleteEvent(item_id=item_id))
        self._live_items = [i for i in self._live_items or [] if i not in set(doomed)]
        if plan.to_summarise:
            self._seed = SessionSeed(self.memory.summary or "", (), dict(self.memory.tool_state))
            await self._send_session_update()  # instructions now carry the summary
        self.items_pruned += len(doomed)
        return len(doomed)

    def remember_user_transcript(self, item_id: str, text: str) -> None:
        """The provider transcribed user item ``item_id``."""
        if self._pending_user_items and item_id in self._pending_user_items:
            self._pending_user_items.remove(item_id)
        self._remember(Turn(Role.USER, text, item_id, is_audio=True))

    def _flush_pending_user_turns(self, keep_last: int = 0) -> None:
        # A user turn without a transcript still happened; the seed says so.
        pending = self._pending_user_items or []
        cut = max(0, len(pending) - keep_last)
        for item_id in pending[:cut]:
            self._remember(Turn(Role.USER, "(spoke; no transcript)", item_id, is_audio=True))
        self._pending_user_items = pending[cut:]

    def remember_assistant(self, item_id: str, text: str, interrupted: bool) -> None:
        """The bot's turn ``item_id`` ended; ``interrupted`` marks a cut reply."""
        self._flush_pending_user_turns()
        if text.strip():
            suffix = " (interrupted)" if interrupted else ""
            self._remember(Turn(Role.ASSISTANT, text.strip() + suffix, item_id, is_audio=True))

    def remember_tool(self, name: str, result: Any) -> None:
        """A tool answered; its result lives outside the model."""
        self.memory.tool_state[name] = str(result)

    def _remember(self, turn: Turn) -> None:
        if self._remembered is None:
            self._remembered = set()
        if turn.item_id is not None:
            if turn.item_id in self._remembered:
                return
            self._remembered.add(turn.item_id)
        self.memory.add(turn)


def _b64(audio: bytes) -> str:
    import base64

    return base64.b64encode(audio).decode("ascii")
