"""One WebSocket connection: the asyncio glue around the sans-I/O session.

The driver feeds client messages, VAD scores, transcripts and brain output
into :class:`~voxpipe.realtime_server.session.RealtimeSession` and carries out what
comes back. Every server event goes through one queue and one writer task,
so events reach the client in exactly the order the session produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pydantic
from aiohttp import WSMessage, WSMsgType
from loguru import logger
from openai.types.realtime import ResponseAudioDeltaEvent
from pydantic_core import PydanticSerializationError

from voxpipe.engines.speculation import Speculation
from voxpipe.realtime_server.conversation import ConversationLimits
from voxpipe.realtime_server.effects import (
    BrainStartRequested,
    BrainStopRequested,
    CloseRequested,
    Output,
    PlayoutCutRequested,
    TranscriptionRequested,
    VadScoringRequested,
)
from voxpipe.realtime_server.ids import IdFactory
from voxpipe.realtime_server.protocol_errors import (
    ErrorCode,
    ErrorType,
    ProtocolError,
    invalid_request,
)
from voxpipe.realtime_server.rate_limits import RateLimitPolicy
from voxpipe.realtime_server.session import Media, RealtimeSession
from voxpipe.realtime_server.turn_detection import VadFrame
from voxpipe.transports.realtime_server.brains import Brain, SpeculativeBrain
from voxpipe.transports.realtime_server.faults import (
    CloseMidResponse,
    ExhaustRateLimits,
    Fault,
    FaultInjector,
    SendError,
    Stall,
)
from voxpipe.transports.realtime_server.vad import SileroBatcher, VadStream

IDLE_TICK_S = 0.1
T = TypeVar("T")
# What a client is told when the brain or the recogniser raises; the exception goes to the log.
BRAIN_FAILED = "The server had an error while generating the response."
TRANSCRIPTION_FAILED = "The server had an error while transcribing the audio."
# A brain silent this long between outputs (or a recogniser this long on one item) is hung:
# its response fails and the session goes on, instead of every later response waiting on it.
BRAIN_DEADLINE_S = 30.0
STT_DEADLINE_S = 30.0
# A client that has not taken a single event for this long while events wait for it
# is not reading: the session closes with 1008 rather than queue for it without end.
WRITE_STALL_S = 30.0
# The queue's hard bound, whatever the socket does (events, not bytes: audio deltas are
# a few KiB each, so this is some hundreds of MiB at worst).
MAX_OUTBOX_EVENTS = 50_000
POLICY_VIOLATION = 1008
# A fault's ``after_ms`` counts reply audio as 24 kHz PCM16, the default output format
# (a G.711 session's deltas, a sixth of the bytes, reach it six times later).
PCM_BYTES_PER_MS = 48


@dataclass(frozen=True)
class _Pause:
    seconds: float


_Outgoing = pydantic.BaseModel | CloseRequested | _Pause


class EventSocket(Protocol):
    """Where a session's events go and its client's events come from.

    An aiohttp WebSocket is one; a WebRTC call's data channel and sidebands,
    gathered behind one object, are another (:mod:`.calls`).
    """

    @property
    def closed(self) -> bool:
        """Whether the client is gone."""
        ...

    async def send_str(self, data: str, compress: int | None = None) -> None:
        """Send one event's JSON."""

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        """Close with ``code``."""
        ...

    def __aiter__(self) -> Any:
        """The client's messages (``WSMessage``), until it goes."""
        ...


def text_message(data: str) -> WSMessage:
    """A client's text message, as the read loop takes it."""
    return WSMessage(WSMsgType.TEXT, data, None)


async def _within(outputs: AsyncIterator[T], gap_s: float) -> AsyncIterator[T]:
    """``outputs``, raising ``TimeoutError`` when the next one takes over ``gap_s``."""
    iterator = aiter(outputs)
    try:
        while True:
            try:
                async with asyncio.timeout(gap_s):
                    item = await anext(iterator)
            except StopAsyncIteration:
                return
            yield item
    finally:
        closing = getattr(iterator, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()


class SessionDriver:
    """Runs one Realtime session over one aiohttp WebSocket (or another :class:`EventSocket`)."""

    def __init__(
        self,
        ws: EventSocket,
        *,
        model: str,
        brain: Brain,
        faults: FaultInjector,
        session_max_seconds: float,
        rate_limits: RateLimitPolicy,
        vad: SileroBatcher,
        preconfig: dict[str, Any] | None = None,
        brain_deadline_s: float = BRAIN_DEADLINE_S,
        stt_deadline_s: float = STT_DEADLINE_S,
        write_stall_s: float = WRITE_STALL_S,
        abort: Callable[[], None] | None = None,
        conversation_limits: ConversationLimits | None = None,
        media: Media = Media.WEBSOCKET,
    ) -> None:
        self._ws = ws
        self._abort = abort
        self._write_stall_s = write_stall_s
        self._overflowed = False
        self._closing: asyncio.Future[Any] | None = None
        self._brain_deadline_s = brain_deadline_s
        self._stt_deadline_s = stt_deadline_s
        self._brain = brain
        self._faults = faults
        self._max_seconds = session_max_seconds
        self._started = time.monotonic()
        self.core = RealtimeSession(
            model=model,
            ids=IdFactory(secrets.token_hex(4)),
            now_ms=0,
            rate_limits=rate_limits,
            conversation_limits=conversation_limits,
            media=media,
        )
        if preconfig:
            self.core.preconfigure(preconfig)
        self._vad = vad
        self._vad_stream = VadStream()
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._brain_tasks: dict[str, asyncio.Task[None]] = {}
        self._transcriptions: set[asyncio.Task[None]] = set()
        self._watched_response: str | None = None
        self._watched_audio_ms = 0.0  # of the watched response's audio, sent so far
        # Faults waiting for their point in that audio.
        self._breaks: list[CloseMidResponse | Stall] = []
        self._speculation: asyncio.Task[str | None] | None = None
        self._speculation_key: tuple[str, int | None] | None = None
        self._reply: Speculation[Any] | None = None  # a reply started at the last pause
        self.messages_received = 0  # client messages of every kind

    def now_ms(self) -> int:
        """Milliseconds since the connection opened (the session's clock)."""
        return int((time.monotonic() - self._started) * 1000)

    async def run(self) -> None:
        """Serve until the client or the server closes the socket."""
        self._faults.subscribe(self._on_fault)
        writer = asyncio.create_task(self._write_loop())
        timers = [
            asyncio.create_task(self._cap_timer()),
            asyncio.create_task(self._idle_ticker()),
        ]
        try:
            self.emit(self.core.start())
            await self._read_loop()
        finally:
            self._faults.unsubscribe(self._on_fault)
            self._vad_stream.closed = True
            for task in [*timers, *self._brain_tasks.values(), *self._transcriptions]:
                task.cancel()
            if self._speculation is not None:
                self._speculation.cancel()
            if self._reply is not None:
                await self._reply.cancel()  # its thread lets go of the shared model
            await self._outbox.put(CloseRequested(1000, ""))
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await asyncio.wait_for(writer, timeout=1.0)
            writer.cancel()

    async def _read_loop(self) -> None:
        async for message in self._ws:
            self.messages_received += 1
            if message.type is WSMsgType.TEXT:
                self._guarded(functools.partial(self.core.receive, message.data, self.now_ms()))
            elif message.type is WSMsgType.BINARY:
                error = invalid_request(
                    ErrorCode.INVALID_JSON,
                    "Binary frames are not supported; send JSON text events.",
                )
                self.emit(self.core.error(error))
            else:
                break

    async def _write_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, CloseRequested):
                await self._ws.close(code=item.code, message=item.reason.encode())
                return
            if isinstance(item, _Pause):
                await asyncio.sleep(item.seconds)
                continue
            if self._ws.closed:
                return
            try:
                async with asyncio.timeout(self._write_stall_s):
                    await self._ws.send_str(self._encode(item))
            except TimeoutError:
                logger.warning(
                    "realtime session {}: the client took nothing for {} s; closing",
                    self.core.session_id,
                    self._write_stall_s,
                )
                await self._close_unread()
                return

    def _encode(self, event: pydantic.BaseModel) -> str:
        """The event as JSON; one that cannot be encoded costs an error event, not the session.

        Text the brain made (or a bug) can hold what UTF-8 cannot carry, such
        as a lone surrogate; left to raise, it would end this writer and leave
        the socket open and mute.
        """
        try:
            return event.model_dump_json(exclude_unset=True)
        except (ValueError, UnicodeError, PydanticSerializationError):
            logger.exception(
                "realtime session {} could not encode {}",
                self.core.session_id,
                getattr(event, "type", type(event).__name__),
            )
            error = ProtocolError(
                ErrorType.SERVER,
                "server_error",
                "The server had an error while processing your request.",
            )
            return error.to_event(self.core.event_id()).model_dump_json(exclude_unset=True)

    # -- outputs ---------------------------------------------------------------

    def _guarded(self, step: Callable[[], list[Output]]) -> None:
        """Run one core step; a bug of ours costs the client an error event, not the session."""
        try:
            outputs = step()
        except Exception:
            logger.exception("realtime session {} hit an internal error", self.core.session_id)
            error = ProtocolError(
                ErrorType.SERVER,
                "server_error",
                "The server had an error while processing your request.",
            )
            outputs = self.core.error(error)
        self.emit(outputs)

    def emit(self, outputs: Iterable[Output]) -> None:
        """Queue events and carry out effects, in order (effects may add outputs)."""
        if self._overflowed:
            return  # the session is being closed for not reading: nothing more goes out
        pending = deque(outputs)
        while pending:
            output = pending.popleft()
            if isinstance(output, pydantic.BaseModel):
                if self._outbox.qsize() >= MAX_OUTBOX_EVENTS:
                    self._overflow()
                    return
                more = self.deliver(output)
                if isinstance(output, ResponseAudioDeltaEvent):
                    self._maybe_break_response(output)
                pending.extendleft(reversed(more))
            elif isinstance(output, PlayoutCutRequested):
                pending.extendleft(reversed(self.cut_playout()))
            elif isinstance(output, VadScoringRequested):
                self._vad.submit(self._vad_stream, output.frames, self._vad_scored)
            elif isinstance(output, BrainStartRequested):
                task = asyncio.create_task(self._run_brain(output.response_id))
                self._brain_tasks[output.response_id] = task
            elif isinstance(output, BrainStopRequested):
                self._stop_brain(output.response_id)
            elif isinstance(output, TranscriptionRequested) and output.speculative:
                self._speculate(output)
            elif isinstance(output, TranscriptionRequested):
                task = asyncio.create_task(self._transcribe(output))
                self._transcriptions.add(task)
                task.add_done_callback(self._transcriptions.discard)
            elif isinstance(output, CloseRequested):
                self._outbox.put_nowait(output)

    def deliver(self, event: pydantic.BaseModel) -> list[Output]:
        """Send one event to the client; returns what that brings about (none, here).

        A WebRTC call sends reply audio on its track instead (:mod:`.calls`).
        """
        self._outbox.put_nowait(event)
        return []

    def cut_playout(self) -> list[Output]:
        """Drop the reply audio still queued for playing (only a WebRTC call plays)."""
        return []

    def _overflow(self) -> None:
        """The client reads too slowly to keep up: close rather than queue without end."""
        if self._overflowed:
            return
        self._overflowed = True
        logger.warning(
            "realtime session {}: {} events wait for the client; closing",
            self.core.session_id,
            MAX_OUTBOX_EVENTS,
        )
        for task in self._brain_tasks.values():
            task.cancel()
        while not self._outbox.empty():  # undeliverable: their memory goes now
            self._outbox.get_nowait()
        # Ahead of the queue: the writer may be stuck on the socket, so close it directly.
        # A client that reads again within the stall limit still gets the 1008 and its reason.
        self._closing = asyncio.ensure_future(self._close_unread(self._write_stall_s))

    async def _close_unread(self, wait_s: float = 1.0) -> None:
        """Queue a 1008 close, then drop the connection if it is not taken within ``wait_s``.

        A client that reads nothing cannot take even the close frame: the socket's
        buffers are full, and a plain close would wait for them to drain for ever.
        """
        try:
            async with asyncio.timeout(wait_s):
                await self._ws.close(code=POLICY_VIOLATION, message=b"client is not reading")
        except Exception as exc:  # whatever the close raises, the peer goes
            logger.debug("closing an unread session: {!r}", exc)
        finally:
            if self._abort is not None:
                self._abort()

    def _maybe_break_response(self, delta: ResponseAudioDeltaEvent) -> None:
        """Faults armed for the next response hit it once ``after_ms`` of its audio went out."""
        if self._watched_response != delta.response_id:
            self._watched_response = delta.response_id
            self._watched_audio_ms = 0.0
            taken = (self._faults.take(CloseMidResponse), self._faults.take(Stall))
            self._breaks = [f for f in taken if isinstance(f, CloseMidResponse | Stall)]
        self._watched_audio_ms += len(delta.delta) * 3 / 4 / PCM_BYTES_PER_MS
        for fault in [f for f in self._breaks if self._watched_audio_ms >= f.after_ms]:
            self._breaks.remove(fault)
            if isinstance(fault, CloseMidResponse):
                self._outbox.put_nowait(CloseRequested(fault.code, "fault injection"))
            elif isinstance(fault, Stall):
                self._outbox.put_nowait(_Pause(fault.seconds))

    def _on_fault(self, fault: Fault) -> None:
        if isinstance(fault, SendError):
            self.emit(self.core.injected_error(fault.error_type, fault.code, fault.message))
            if fault.close_code is not None:
                self.emit([CloseRequested(fault.close_code, fault.code)])
        elif isinstance(fault, ExhaustRateLimits):
            self.core.exhaust_rate_limits(self.now_ms(), fault.reset_seconds)

    # -- tasks -----------------------------------------------------------------

    def _stop_brain(self, response_id: str) -> None:
        task = self._brain_tasks.pop(response_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run_brain(self, response_id: str) -> None:
        try:
            if self._transcriptions:
                # wait, not gather: a response cancelled by the caller's next words
                # must not cancel the transcription of the words before them.
                await asyncio.wait(set(self._transcriptions))
            request = self.core.brain_request(response_id)
            reply, self._reply = self._reply, None
            if isinstance(self._brain, SpeculativeBrain):
                outputs = self._brain.respond(request, speculation=reply)
            else:
                outputs = self._brain.respond(request)
            async for output in _within(outputs, self._brain_deadline_s):
                self.emit(self.core.brain_output(response_id, output, self.now_ms()))
                active = self.core.active
                if active is None or active.id != response_id:
                    return
            self.emit(self.core.brain_finished(response_id, self.now_ms()))
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            logger.error(
                "brain silent for {} s on {}: the response fails",
                self._brain_deadline_s,
                response_id,
            )
            self.emit(self.core.brain_finished(response_id, self.now_ms(), error=BRAIN_FAILED))
        except Exception:
            # The details (a file path, a model's own words) stay in the log:
            # a client learns only that the server failed.
            logger.exception("brain failed on {}", response_id)
            self.emit(self.core.brain_finished(response_id, self.now_ms(), error=BRAIN_FAILED))
        finally:
            self._brain_tasks.pop(response_id, None)

    def _speculate(self, request: TranscriptionRequested) -> None:
        """Transcribe at a pause, so the turn's transcript is ready when the pause ends it.

        A brain that can speculate also starts on the reply that transcript
        would get, while the server waits out the rest of the silence.
        """
        if self._speculation is not None and not self._speculation.done():
            return  # one guess at a time: a busy recogniser would only slow the real turn
        self._speculation_key = (request.item_id, request.speech_end_ms)
        self._speculation = asyncio.create_task(self._transcribe_and_speculate(request))

    async def _transcribe_and_speculate(self, request: TranscriptionRequested) -> str | None:
        text = await self._brain.transcribe(request.pcm16, request.sample_rate)
        if text and isinstance(self._brain, SpeculativeBrain) and self.core.active is None:
            stale, self._reply = self._reply, None  # a later pause: the caller said more
            if stale is not None:
                await stale.cancel()
            self._reply = self._brain.speculate(self.core.speculative_request(text))
        return text

    async def _recognise(self, request: TranscriptionRequested) -> str | None:
        speculation = self._speculation
        if speculation and self._speculation_key == (request.item_id, request.speech_end_ms):
            return await speculation
        return await self._brain.transcribe(request.pcm16, request.sample_rate)

    async def _transcribe(self, request: TranscriptionRequested) -> None:
        try:
            async with asyncio.timeout(self._stt_deadline_s):
                text = await self._recognise(request)
        except TimeoutError:
            logger.error(
                "transcription of {} took over {} s", request.item_id, self._stt_deadline_s
            )
            self.emit(self.core.transcription_failed(request.item_id, TRANSCRIPTION_FAILED))
            return
        except Exception:
            logger.exception("transcription of {} failed", request.item_id)
            self.emit(self.core.transcription_failed(request.item_id, TRANSCRIPTION_FAILED))
            return
        if text is None:
            message = "This server's brain has no speech recognition."
            self.emit(self.core.transcription_failed(request.item_id, message))
        else:
            self.emit(self.core.transcription_completed(request.item_id, text))

    def _vad_scored(self, scored: list[tuple[VadFrame, float]]) -> None:
        self._guarded(functools.partial(self.core.vad_scored, scored, self.now_ms()))

    async def _cap_timer(self) -> None:
        await asyncio.sleep(self._max_seconds)
        self.emit(self.core.expire(self._max_seconds, self.now_ms()))

    async def _idle_ticker(self) -> None:
        while True:
            turn = self.core.config.turn
            watching = turn is not None and turn.idle_timeout_ms is not None
            await asyncio.sleep(IDLE_TICK_S if watching else IDLE_TICK_S * 4)
            self.emit(self.core.idle_check(self.now_ms()))
