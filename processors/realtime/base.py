"""The state every part of the realtime service shares: the cores, the clock, publishing.

:class:`RealtimeBase` owns one instance of each sans-I/O core of
:mod:`voxpipe.call` and the helpers the mixins (interruption, recovery,
rollover) and the service use to drive them. It adds no behaviour of its own
to pipecat's service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

from loguru import logger
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.realtime import events as rt
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

from voxpipe.call import (
    BackoffConfig,
    CallMemory,
    CallState,
    CallStateMachine,
    CallTrigger,
    CancelConfirmed,
    PlaybackTracker,
    RecoveryPolicy,
    ResponseGuard,
    RolloverConfig,
    RolloverPolicy,
    SendResponseCancel,
    SendResponseCreate,
    SessionAudioLog,
    StateChanged,
    StateTimeouts,
    TransitionRejected,
    UserAudioRelay,
)
from voxpipe.call.response_guard import GuardOutput
from voxpipe.call.tokens import RotationFailed, SecretRotated, TokenMode
from voxpipe.playback import PlaybackClock
from voxpipe.processors.realtime.events import (
    CallEvent,
    RateLimit,
    RealtimeCallEventFrame,
    ResponseCancelled,
    ResponseRequested,
    TokenRotated,
)
from voxpipe.transports.tokens import StaticKeyProvider, TokenProvider


class ResponseCancelFor(rt.ClientEvent):  # type: ignore[misc]
    """``response.cancel`` naming the response, so a late cancel never hits the next one."""

    type: str = "response.cancel"
    response_id: str | None = None


def monotonic_ms() -> float:
    """Milliseconds on the monotonic clock (the default service clock)."""
    return time.monotonic() * 1000


class RealtimeBase(OpenAIRealtimeLLMService):
    """pipecat's realtime service plus the call's cores (see :class:`RealtimeService`)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        playback: PlaybackClock | None = None,
        now_ms: Callable[[], float] = monotonic_ms,
        context: LLMContext | None = None,
        rollover: RolloverConfig | None = None,
        backoff: BackoffConfig | None = None,
        timeouts: StateTimeouts | None = None,
        random_fn: Callable[[], float] = random.random,
        stall_timeout_ms: int = 4_000,
        strict_states: bool = False,
        **kwargs: Any,
    ) -> None:
        if token_provider is None:
            token_provider = StaticKeyProvider(api_key or "")
        super().__init__(api_key="<from token provider>", **kwargs)
        self.tokens: TokenProvider = token_provider
        self.playback = playback or PlaybackClock()
        self.now_ms = now_ms
        self.machine = CallStateMachine(
            strict=strict_states, timeouts=timeouts, now_ms=int(now_ms())
        )
        self.guard = ResponseGuard(server_auto_cancels=False)
        self.tracker = PlaybackTracker()
        self.relay = UserAudioRelay()
        self.sent_audio = SessionAudioLog()  # this session's input audio line, by frame
        self.rollover_policy = RolloverPolicy(rollover or RolloverConfig())
        self.memory = CallMemory()
        self.recovery = RecoveryPolicy(random_fn, backoff or BackoffConfig())
        self.stall_timeout_ms = stall_timeout_ms
        self.events: list[CallEvent] = []
        self.rate_limits: tuple[RateLimit, ...] = ()
        self.tokens_rotated = 0
        if context is not None:
            self._context = context
        self._generation = 0  # which socket is current; a stale socket's close is ignored
        self._last_server_event_ms = now_ms()
        self._bot_speaking = False
        self._dropping: set[str] = set()  # responses whose output must never be played
        self._audio_response_id: str | None = None  # the response whose delta is in hand
        self._marked_items: set[str] = set()
        self._playout_pending = False  # response.done seen, its audio still playing
        self._transcripts: dict[str, list[str]] = {}
        self._register_event_handler("on_call_event")
        self._register_event_handler("on_fatal_error")

    def sent_ms(self, frame_id: int) -> float | None:
        """When the caller's frame ``frame_id`` went out to the model, on ``now_ms``'s clock.

        None for a frame this session never sent (or sent too long ago); the
        latency instruments read it (``SendReports``).
        """
        return self.sent_audio.sent_at(frame_id)

    @property
    def token_mode(self) -> TokenMode:
        """Static key or rotating ephemeral secrets."""
        return self.tokens.mode

    async def _auth_headers(self) -> dict[str, str]:
        secret = await self.tokens.secret()
        return {"Authorization": f"Bearer {secret.value}"}

    def _now(self) -> int:
        return int(self.now_ms())

    async def publish(self, event: CallEvent) -> None:
        """Record ``event`` and tell the application (handler and frame)."""
        self.events.append(event)
        logger.debug(f"{self}: {event}")
        await self._call_event_handler("on_call_event", event)
        await self.push_frame(RealtimeCallEventFrame(event=event, at_ms=self.now_ms()))

    async def fire(self, trigger: CallTrigger, *, only_if_legal: bool = True) -> bool:
        """Move the state machine and publish the transition; False if it did not move.

        ``only_if_legal`` skips triggers the current state does not take
        (provider events that may or may not apply, such as a second
        ``session.updated``); otherwise an illegal move is published as a
        :class:`TransitionRejected` (and raises with ``strict_states``).
        """
        if only_if_legal and not self.machine.can(trigger):
            return False
        self.machine.handle(trigger, self._now())
        await self.publish_transitions()
        return True

    async def publish_transitions(self) -> None:
        """Publish what the state machine did since the last call."""
        for result in self.machine.drain_events():
            if isinstance(result, StateChanged | TransitionRejected):
                await self.publish(result)

    async def carry_out(self, outputs: tuple[GuardOutput, ...] | list[GuardOutput]) -> None:
        """Send what the response guard decided, publish what it reported."""
        for output in outputs:
            if isinstance(output, SendResponseCreate):
                await self.publish(ResponseRequested(output.request.reason, queued=False))
                await self._send_response_create()
            elif isinstance(output, SendResponseCancel):
                await self.send_client_event(ResponseCancelFor(response_id=output.response_id))
            elif isinstance(output, CancelConfirmed):
                await self.publish(ResponseCancelled(output.response_id, "cancel_confirmed"))
                await self.fire(CallTrigger.CANCEL_CONFIRMED)

    async def _send_response_create(self) -> None:
        """pipecat's create (conversation setup, metrics), once the guard allowed it."""
        self._response_active = False  # the guard, not pipecat's flag, decides now
        if self.machine.state is CallState.CALLING_TOOL:
            await self.fire(CallTrigger.TOOL_RESULT_SENT)
        else:
            await self.fire(CallTrigger.RESPONSE_REQUESTED)
        await super()._create_response()

    def response_is_dropped(self, response_id: str | None) -> bool:
        """True for output of a cancelled or interrupted response."""
        if response_id is None:
            return False
        return response_id in self._dropping or self.guard.is_cancelled(response_id)

    def note_token_event(self, event: SecretRotated | RotationFailed) -> None:
        """Called by an :class:`EphemeralTokenProvider`'s ``on_event`` hook (sync)."""
        if isinstance(event, RotationFailed):
            rotated = TokenRotated(self.tokens_rotated, event.failures, True, event.reason)
        else:
            self.tokens_rotated = event.rotations
            rotated = TokenRotated(event.rotations, 0, False)
        self.events.append(rotated)
        # The provider calls back synchronously; tell the application from the loop.
        with contextlib.suppress(Exception):  # before setup there is no task manager yet
            self.create_task(self._announce_token(rotated), name="voxpipe-token-event")

    async def _announce_token(self, event: TokenRotated) -> None:
        await self._call_event_handler("on_call_event", event)
        await self.push_frame(RealtimeCallEventFrame(event=event, at_ms=self.now_ms()))

    def state_snapshot(self) -> dict[str, Any]:
        """The call state and context, for logs and tests."""
        return {
            "state": self.machine.state,
            "context": dataclasses.asdict(self.machine.context),
            "relay": self.relay.stats(),
        }
