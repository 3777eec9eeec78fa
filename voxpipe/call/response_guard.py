"""Active-response guard: one response at a time, cancels that always land.

The Realtime API allows one active response per conversation. Sending
``response.create`` while one is active earns
``conversation_already_has_active_response``; cancelling when none is active
earns ``response_cancel_not_active``. Neither is fatal: this guard queues
requests, re-queues refused ones, treats a late cancel as confirmed, and
decides whether an interruption needs an explicit ``response.cancel``.

A response is *active* from the moment we send ``response.create`` (or the
server creates one on its own, with server VAD) until ``response.done``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict, deque


class ResponseReason(enum.Enum):
    """Why a response is wanted; kept for logs and the timeline."""

    USER_TURN = "user_turn"
    TOOL_RESULT = "tool_result"
    APPLICATION = "application"
    GREETING = "greeting"
    SAFE_LINE = "safe_line"  # a guardrail's line, after the response it stopped
    FILLER = "filler"  # "one moment" while a delegated tool call waits on its backend


class InterruptionSource(enum.Enum):
    """Who interrupted the bot."""

    SERVER_VAD = "server_vad"  # input_audio_buffer.speech_started from the provider
    LOCAL_VAD = "local_vad"  # our own VAD / turn detector
    PROCESSOR = "processor"  # e.g. a guardrail called broadcast_interruption()
    APPLICATION = "application"


class GuardErrorCode(enum.Enum):
    """Provider error codes this guard absorbs."""

    ALREADY_HAS_ACTIVE_RESPONSE = "conversation_already_has_active_response"
    CANCEL_NOT_ACTIVE = "response_cancel_not_active"


@dataclasses.dataclass(frozen=True)
class ResponseRequest:
    """A wish for a response.

    ``instructions`` are response-level instructions (the safe line a
    guardrail wants said); None asks for an ordinary reply to the conversation.
    """

    request_id: str
    reason: ResponseReason
    instructions: str | None = None


@dataclasses.dataclass(frozen=True)
class SendResponseCreate:
    """Command: send ``response.create`` for ``request``."""

    request: ResponseRequest


@dataclasses.dataclass(frozen=True)
class SendResponseCancel:
    """Command: send ``response.cancel`` (``response_id`` None: the in-progress one)."""

    response_id: str | None


@dataclasses.dataclass(frozen=True)
class ResponseQueued:
    """``request`` waits for the active response to finish."""

    request: ResponseRequest
    queue_length: int


@dataclasses.dataclass(frozen=True)
class ResponseRequestDropped:
    """``request`` will not be sent (the user interrupted, or the queue overflowed)."""

    request: ResponseRequest


@dataclasses.dataclass(frozen=True)
class CancelConfirmed:
    """The interrupted response is over (``response.done`` or ``cancel_not_active``)."""

    response_id: str | None


GuardOutput = (
    SendResponseCreate
    | SendResponseCancel
    | ResponseQueued
    | ResponseRequestDropped
    | CancelConfirmed
)


class ResponseGuard:
    """Decides when ``response.create`` and ``response.cancel`` may go out.

    ``server_auto_cancels`` mirrors ``turn_detection.interrupt_response``:
    when true, a barge-in the *server* detected already cancels the response,
    so no explicit cancel is sent for it. Every other interruption (local VAD,
    a guardrail, the application) sends one, server VAD on or off.
    """

    def __init__(
        self,
        *,
        server_auto_cancels: bool = False,
        max_queue: int = 4,
        remember_cancelled: int = 32,
    ) -> None:
        self.server_auto_cancels = server_auto_cancels
        self._max_queue = max_queue
        self._remember = remember_cancelled
        self._queue: deque[ResponseRequest] = deque()
        self._last_sent: ResponseRequest | None = None  # ours, until its response is done
        self._active_id: str | None = None
        self._active = False
        self._cancelling = False
        self._cancel_on_create = False
        self._cancelled: OrderedDict[str, None] = OrderedDict()

    @property
    def response_active(self) -> bool:
        """True from ``response.create`` (ours or the server's) to ``response.done``."""
        return self._active

    @property
    def active_response_id(self) -> str | None:
        """The active response's id, once ``response.created`` named it."""
        return self._active_id

    @property
    def queued(self) -> tuple[ResponseRequest, ...]:
        """Requests waiting, oldest first."""
        return tuple(self._queue)

    def request_response(self, request: ResponseRequest) -> list[GuardOutput]:
        """Send ``response.create`` now, or queue it behind the active response."""
        if not self._active:
            return [self._send(request)]
        return self.hold(request)

    def hold(self, request: ResponseRequest) -> list[GuardOutput]:
        """No session can take ``request`` now (connecting, switching): queue it to flush."""
        out: list[GuardOutput] = []
        if len(self._queue) >= self._max_queue:
            out.append(ResponseRequestDropped(self._queue.popleft()))
        self._queue.append(request)
        out.append(ResponseQueued(request, len(self._queue)))
        return out

    def on_response_created(self, response_id: str) -> list[GuardOutput]:
        """``response.created``: ours, or one the server made on its own."""
        self._active, self._active_id = True, response_id
        if self._cancel_on_create:
            # We were interrupted before the response had an id: cancel it now.
            self._cancel_on_create = False
            self._mark_cancelled(response_id)
            return [SendResponseCancel(response_id)]
        return []

    def on_response_done(self, response_id: str | None) -> list[GuardOutput]:
        """``response.done`` (any status): the slot is free; send the next request.

        A ``response.done`` for another response than the active one is stale
        (a cancelled response finishing late) and changes nothing.
        """
        if response_id is not None and response_id != self._active_id:
            return []
        out: list[GuardOutput] = []
        if self._cancelling:
            out.append(CancelConfirmed(response_id))
        self._clear_active()
        out.extend(self._send_next())
        return out

    def on_interruption(self, source: InterruptionSource) -> list[GuardOutput]:
        """The bot was interrupted: drop queued requests, cancel the active response."""
        out: list[GuardOutput] = [ResponseRequestDropped(r) for r in self._queue]
        self._queue.clear()
        if not self._active or self._cancelling:
            return out
        self._cancelling = True
        if self._active_id is not None:
            self._mark_cancelled(self._active_id)
        if source is InterruptionSource.SERVER_VAD and self.server_auto_cancels:
            return out
        if self._active_id is None:
            # response.create is in flight: a cancel now may arrive before the
            # response exists, so cancel again once response.created names it.
            self._cancel_on_create = True
        out.append(SendResponseCancel(self._active_id))
        return out

    def on_error(self, code: GuardErrorCode) -> list[GuardOutput]:
        """Absorb a provider error this guard owns; never fatal."""
        if code is GuardErrorCode.ALREADY_HAS_ACTIVE_RESPONSE:
            # The server made a response we did not ask for (server VAD
            # create_response): ours goes back to the front of the queue.
            if self._last_sent is not None:
                self._queue.appendleft(self._last_sent)
                self._last_sent = None
            self._active = True
            return []
        # CANCEL_NOT_ACTIVE: the response ended before our cancel landed.
        if not self._cancelling:
            return []
        if self._cancel_on_create and self._active_id is None:
            return []  # cancel raced response.created; the retry on create will land
        return self.on_response_done(self._active_id)

    def is_cancelled(self, response_id: str) -> bool:
        """True for a cancelled response: drop its late audio and transcript deltas."""
        return response_id in self._cancelled

    def on_session_reset(self) -> None:
        """The socket or session was replaced: nothing is active on the new one.

        A request sent but never answered goes back to the front of the queue;
        call :meth:`flush` once the new session is ready.
        """
        if self._active and self._active_id is None and self._last_sent is not None:
            self._queue.appendleft(self._last_sent)
        self._clear_active()

    def withdraw(self) -> list[GuardOutput]:
        """The request just sent was dropped before it went out: the slot is free again.

        For a request that lost its point while it waited in the queue (a filler
        whose tool call ended meanwhile); sends the next queued request, if any.
        """
        if not self._active or self._active_id is not None:
            return []  # nothing of ours in flight (or it is running already)
        self._clear_active()
        return self._send_next()

    def flush(self) -> list[GuardOutput]:
        """Send the next queued request if the slot is free (after a reset)."""
        return [] if self._active else self._send_next()

    def _send(self, request: ResponseRequest) -> SendResponseCreate:
        self._active, self._active_id, self._last_sent = True, None, request
        return SendResponseCreate(request)

    def _send_next(self) -> list[GuardOutput]:
        return [self._send(self._queue.popleft())] if self._queue else []

    def _clear_active(self) -> None:
        self._active, self._active_id, self._last_sent = False, None, None
        self._cancelling = self._cancel_on_create = False

    def _mark_cancelled(self, response_id: str) -> None:
        self._cancelled[response_id] = None
        while len(self._cancelled) > self._remember:
            self._cancelled.popitem(last=False)
