"""Classified recovery: reconnect with backoff, renew the session, or stop for good.

A failure signal (socket closed, network error, handshake refused, provider
``error`` event, a stalled stream) goes to the sans-I/O
:class:`~voxpipe.call.RecoveryPolicy`. TRANSPORT and SESSION failures
reconnect after a bounded, jittered delay (SESSION mints a new secret first);
the new session is seeded from the call's memory by the rollover mixin's
:meth:`open_session`. FATAL failures, and a spent retry budget, end in a
:class:`~voxpipe.errors.FatalProviderError` (or
:class:`~voxpipe.errors.RetryBudgetExhaustedError`) pushed upstream as a fatal
``ErrorFrame`` and given to ``on_fatal_error``; nothing is retried after that.
"""

from __future__ import annotations

import asyncio
import contextlib

from loguru import logger
from pipecat.frames.frames import CancelWorkerFrame, ErrorFrame
from pipecat.processors.frame_processor import FrameDirection
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from voxpipe.call import (
    CallTrigger,
    FailureClass,
    GiveUp,
    HandshakeRejected,
    NetworkFailed,
    Reconnect,
    SocketClosed,
)
from voxpipe.call.recovery import FailureSignal, describe
from voxpipe.errors import FatalProviderError, VoxpipeError
from voxpipe.processors.realtime.base import RealtimeBase
from voxpipe.processors.realtime.events import CallFailed, Reconnected, Reconnecting

CONNECT_TIMEOUT_S = 10.0


class RecoveryMixin(RealtimeBase):
    """Owns the socket's life: connect, notice its death, and bring a new one up."""

    _recovering: bool = False
    _failed: bool = False
    _failure_started_ms: float = 0.0
    _failure_class: FailureClass | None = None
    _pending_reconnect: tuple[FailureClass, int] | None = None

    @property
    def failed(self) -> bool:
        """True once the call gave up (fatal error or retry budget spent)."""
        return self._failed

    async def _connect(self) -> None:
        if self._websocket or self._failed:
            return
        signal = await self.open_socket()
        if signal is not None:
            self.begin_recovery(signal)

    async def open_socket(self) -> FailureSignal | None:
        """Open a socket and start reading it; the failure signal if that failed."""
        try:
            headers = await self._auth_headers()
            ws: ClientConnection = await asyncio.wait_for(
                websocket_connect(uri=self.base_url, additional_headers=headers),
                CONNECT_TIMEOUT_S,
            )
        except InvalidStatus as exc:
            # The body's error code is not trusted here: a 401 on connect means
            # the secret is stale, which a fresh one fixes.
            return HandshakeRejected(exc.response.status_code)
        except FatalProviderError as exc:  # minting refused the long-lived key
            return HandshakeRejected(401, exc.code)
        except (OSError, TimeoutError, InvalidHandshake, VoxpipeError) as exc:
            return NetworkFailed(f"{type(exc).__name__}: {exc}")
        self._generation += 1
        self._websocket = ws  # type: ignore[assignment]
        self.sent_audio.new_session()  # a new session's audio positions start at 0
        self._last_server_event_ms = self.now_ms()
        self._receive_task = self.create_task(  # type: ignore[assignment]
            self._receive_task_handler(), name="realtime-recv"
        )
        return None

    async def _receive_task_handler(self) -> None:
        ws, generation = self._websocket, self._generation
        assert ws is not None
        signal: FailureSignal | None = None
        try:
            async for message in ws:
                self._last_server_event_ms = self.now_ms()
                await self.dispatch_server_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed socket or a broken message: both end this socket
            if ws.close_code is None:
                signal = NetworkFailed(f"{type(exc).__name__}: {exc}")
        if self._disconnecting or generation != self._generation or self._recovering:
            return  # we closed it ourselves, or it was already replaced
        if signal is None:
            signal = SocketClosed(ws.close_code or 1006, ws.close_reason or "")
        self.begin_recovery(signal)

    def begin_recovery(self, signal: FailureSignal) -> None:
        """Start recovering from ``signal`` in a task of its own (never the reader's)."""
        if self._recovering or self._failed:
            return
        self._recovering = True
        self._failure_started_ms = self.now_ms()
        self.create_task(self._recover(signal), name="realtime-recover")

    async def _recover(self, signal: FailureSignal) -> None:
        try:
            await self._recover_loop(signal)
        finally:
            self._recovering = False

    async def _recover_loop(self, signal: FailureSignal | None) -> None:
        attempts = 0
        await self._drop_session()
        await self.fire(CallTrigger.CONNECTION_LOST)
        while signal is not None:
            action = self.recovery.on_failure(signal, self._now())
            if action is None:
                logger.warning(f"{self}: {describe(signal)} is not a connection failure")
                return
            if isinstance(action, GiveUp):
                await self.fail(action.error, action.failure_class)
                return
            attempts += 1
            self._failure_class = action.failure_class
            await self._announce(action, signal)
            await asyncio.sleep(action.delay_ms / 1000)
            if action.refresh_secret:
                with contextlib.suppress(VoxpipeError):
                    await self.tokens.refresh()  # a failed mint shows up as a failed connect
            signal = await self.open_socket()
        self.recovery.on_connected()
        self._pending_reconnect = (self._failure_class or FailureClass.TRANSPORT, attempts)

    async def _announce(self, action: Reconnect, signal: FailureSignal) -> None:
        await self.publish(
            Reconnecting(
                action.failure_class,
                action.attempt,
                action.delay_ms,
                describe(signal),
                action.refresh_secret,
            )
        )

    async def _drop_session(self) -> None:
        """Forget the dead socket; hold user audio and reset what lived in the session."""
        self.relay.on_disconnected()
        self.guard.on_session_reset()
        ws, self._websocket = self._websocket, None
        self._api_session_ready = False
        self._open_function_calls = set()
        self._response_active = False
        self._current_audio_response = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

    async def announce_reconnected(self, replayed_ms: int, seeded: int) -> None:
        """The new session is ready after a failure: publish how long it took."""
        pending = self._pending_reconnect
        if pending is None:
            return
        self._pending_reconnect = None
        failure_class, attempts = pending
        downtime = self.now_ms() - self._failure_started_ms
        await self.publish(Reconnected(failure_class, attempts, downtime, replayed_ms, seeded))

    async def fail(self, error: VoxpipeError, failure_class: FailureClass) -> None:
        """Give up: publish, tell the application, push a fatal ErrorFrame; no more retries."""
        if self._failed:
            return
        self._failed = True
        logger.error(f"{self}: giving up: {error}")
        await self._drop_session()
        await self.fire(CallTrigger.FATAL_ERROR)
        await self.publish(CallFailed(error, failure_class))
        await self._call_event_handler("on_fatal_error", error)
        await self.push_error_frame(
            ErrorFrame(error=str(error), exception=error),
            force_treat_as_permanent=True,
        )
        # The call cannot go on: end it now, whatever the worker's unusable policy.
        await self.push_frame(CancelWorkerFrame(reason=str(error)), FrameDirection.UPSTREAM)
