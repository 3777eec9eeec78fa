"""voxpipe's realtime speech-to-speech service: a thin driver over :class:`RealtimeCall`.

:class:`RealtimeService` subclasses pipecat's ``OpenAIRealtimeLLMService`` for
what pipecat already does well (turning server events into frames, the
conversation set-up from the ``LLMContext``, function calls, usage metrics)
and hands every decision to the sans-I/O
:class:`~voxpipe.call.realtime_call.RealtimeCall`: it reads the socket, gives
each event, interruption, report and tick to the core, and carries out the
commands that come back, in order. It decides nothing itself.

pipecat private names it touches, and why (pipecat 1.14 has no public hook):

- ``_connect``, ``_disconnect``, ``_receive_task_handler``: pipecat connects in
  ``setup`` and its read loop dies silently when the socket closes; the core
  must hear of every close, and reconnects must go through it.
- ``_auth_headers``: the secret comes from a token provider.
- ``_websocket``, ``_api_session_ready``, ``_response_active``,
  ``_open_function_calls``, ``_current_assistant_response``: pipecat's own
  per-session state, reset when a session is dropped (its ``_disconnect``
  would also tear down the service) and cleared when a response is cut.
- ``_llm_needs_conversation_setup``: cleared when the call comes back from
  the fallback brain, whose session is seeded from the call's record, and
  before any response once the call holds a conversation (the core says
  which: ``CreateResponse.set_up_conversation``).
- ``_create_response``: pipecat calls it for the initial context and for tool
  results; routed through the core, which decides when a response may start.
- ``_send_session_update``: the core asks for a new ``session.update`` after
  pruning (the instructions then carry the summary).
- ``_handle_interruption``, ``_handle_user_stopped_speaking``,
  ``_send_user_audio``: pipecat's hooks for interruption frames (its version
  truncates by wall clock), local turn ends and caller audio.
- ``_resampler``: pipecat's stream resampler for caller audio at other rates.
- the ``_handle_evt_*`` handlers in :data:`PIPECAT_HANDLERS`: pipecat turns
  those server events into frames; the core says which reach them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    CancelWorkerFrame,
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    ProposedUserStartedSpeakingFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.openai._constants import OPENAI_SAMPLE_RATE
from pipecat.services.openai.realtime import events as rt
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from websockets.asyncio.client import ClientConnection

from voxpipe.audio import AudioFormat
from voxpipe.call.commands import (
    BroadcastUserSpeech,
    CloseSession,
    Command,
    CreateResponse,
    EndCall,
    EndResponseOutput,
    Forward,
    OpenSession,
    PlayAudio,
    Publish,
    ReportError,
    ResponseAudioEnded,
    SendEvent,
    StopOutput,
    UpdateSession,
)
from voxpipe.call.config import CallConfig
from voxpipe.call.event_log import EVENTS_KEPT, EventLog
from voxpipe.call.events import CallEvent, TokenRotated
from voxpipe.call.probe import HealthProbe, ProbeFinished
from voxpipe.call.realtime_call import RealtimeCall
from voxpipe.call.recovery import FailureClass, FailureSignal, NetworkFailed, SocketClosed
from voxpipe.call.response_guard import InterruptionSource, ResponseReason
from voxpipe.call.rollover import Turn
from voxpipe.call.state import CallState
from voxpipe.call.tokens import RotationFailed, SecretRotated, TokenMode
from voxpipe.call.user_audio import SendUserAudio
from voxpipe.errors import FatalProviderError, IllegalTransitionError, RemoteProtocolError
from voxpipe.frames import G711OutputAudioFrame, PlaybackMarkerFrame, RealtimeCallEventFrame
from voxpipe.playback import PlaybackLedger
from voxpipe.processors.realtime.formats import G711_RATE, G711Input, with_audio_formats
from voxpipe.processors.realtime.probe import run_probe
from voxpipe.processors.realtime.socket import (
    close_quietly,
    minting_refused,
    open_socket,
    parse_server_event,
)
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.transports.tokens import (
    EphemeralTokenProvider,
    NoKeyProvider,
    StaticKeyProvider,
    TokenProvider,
)

TICK_S = 0.1

_Handler = Callable[[OpenAIRealtimeLLMService, Any], Awaitable[Any]]
PIPECAT_HANDLERS: dict[str, _Handler] = {
    "session.created": OpenAIRealtimeLLMService._handle_evt_session_created,
    "session.updated": OpenAIRealtimeLLMService._handle_evt_session_updated,
    "response.created": OpenAIRealtimeLLMService._handle_evt_response_created,
    "response.done": OpenAIRealtimeLLMService._handle_evt_response_done,
    "response.output_audio_transcript.delta": (
        OpenAIRealtimeLLMService._handle_evt_audio_transcript_delta
    ),
    "response.output_text.delta": OpenAIRealtimeLLMService._handle_evt_text_delta,
    "response.function_call_arguments.done": (
        OpenAIRealtimeLLMService._handle_evt_function_call_arguments_done
    ),
    "conversation.item.added": OpenAIRealtimeLLMService._handle_evt_conversation_item_added,
    "conversation.item.done": OpenAIRealtimeLLMService._handle_evt_conversation_item_done,
    "conversation.item.retrieved": OpenAIRealtimeLLMService._handle_conversation_item_retrieved,
    "conversation.item.input_audio_transcription.delta": (
        OpenAIRealtimeLLMService._handle_evt_input_audio_transcription_delta
    ),
    "conversation.item.input_audio_transcription.completed": (
        OpenAIRealtimeLLMService.handle_evt_input_audio_transcription_completed
    ),
    "input_audio_buffer.speech_stopped": OpenAIRealtimeLLMService._handle_evt_speech_stopped,
    "error": OpenAIRealtimeLLMService._maybe_handle_evt_retrieve_conversation_item_error,
}


def monotonic_ms() -> float:
    """Milliseconds on the monotonic clock (the clock when no transport gives one)."""
    return time.monotonic() * 1000


class RealtimeService(OpenAIRealtimeLLMService):
    """The realtime brain of a voxpipe call.

    Args (beyond pipecat's ``OpenAIRealtimeLLMService``):
        api_key: a static server-side key (or pass ``token_provider``).
        token_provider: :class:`~voxpipe.transports.tokens.StaticKeyProvider` or
            :class:`~voxpipe.transports.tokens.EphemeralTokenProvider`.
        ledger: the call's playback ledger, which the output transport reports
            into; truncation reads it.
        now_ms: the clock the ledger's reports use (the output transport's).
        context: the call's ``LLMContext`` (tools, and the record the
            aggregators keep).
        config: the call's behaviour (turns, timeouts, rollover, backoff).
        random_fn: randomness for backoff jitter (seeded in tests).
        events_kept: how many of the newest call events ``events`` keeps (all are counted).

    Event handlers: ``on_call_event(service, event)`` for every
    :data:`~voxpipe.call.events.CallEvent`, and ``on_fatal_error(service,
    error)`` once, when the call gives up.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        ledger: PlaybackLedger | None = None,
        now_ms: Callable[[], float] = monotonic_ms,
        context: LLMContext | None = None,
        config: CallConfig | None = None,
        random_fn: Callable[[], float] = random.random,
        events_kept: int = EVENTS_KEPT,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key="<from token provider>", **kwargs)
        self.tokens: TokenProvider = token_provider or (
            StaticKeyProvider(api_key) if api_key else NoKeyProvider()
        )
        self.now_ms = now_ms
        self.call = RealtimeCall(
            config,
            ledger=ledger,
            random=random_fn,
            new_id=lambda: f"item_vp{uuid.uuid4().hex[:20]}",
            now_ms=int(now_ms()),
        )
        # The newest events, for tests and benchmarks; observers get every one as it happens.
        self.events = EventLog(events_kept)
        # Caller audio frames this service has handled: a brain switch waits for the ones
        # on their way through the realtime branch before it hands the relay's to the other.
        self.caller_frames_taken = 0
        self._close_in_background = False  # a hand-over does not wait for the socket's close
        fmt = self.call.config.input_format
        # A G.711 session: the caller's bytes as they came where they still hold.
        self.g711_input = G711Input(fmt) if fmt is not AudioFormat.PCM16_24K else None
        if context is not None:
            self._context = context
        self._generation = 0  # which socket is current: a replaced socket's end is not news
        # Why the call gave up, kept here as well as pushed as an ErrorFrame: the
        # cancel that follows may end the pipeline before any observer sees that frame.
        self.fatal_error: Exception | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._opener: asyncio.Task[None] | None = None
        self._register_event_handler("on_call_event")
        self._register_event_handler("on_fatal_error")

    # -- queries -------------------------------------------------------------------

    @property
    def machine(self) -> Any:
        """The call's state machine (``.state`` is where the call is)."""
        return self.call.machine

    @property
    def failed(self) -> bool:
        """True once the call gave up (fatal error or retry budget spent)."""
        return self.call.machine.state is CallState.FAILED

    @property
    def token_mode(self) -> TokenMode:
        """Static key or rotating ephemeral secrets."""
        return self.tokens.mode

    @property
    def caller_turns(self) -> int:
        """The caller's turns so far (committed user audio, across sessions)."""
        return self.call.record.user_turns_committed

    async def publish_call_event(self, event: CallEvent) -> None:
        """Publish an event decided outside the core (a deduplicated tool call) as its own."""
        await self._publish(event)

    def sent_ms(self, frame_id: int) -> float | None:
        """When the caller's frame ``frame_id`` went out to the model (``now_ms``'s clock)."""
        return self.call.sent_audio.sent_at(frame_id)

    def _now(self) -> int:
        return int(self.now_ms())

    # -- life cycle ------------------------------------------------------------------

    async def start(self, frame: StartFrame) -> None:
        """Start the service, the token rotation and the call's timer."""
        await super().start(frame)
        if isinstance(self.tokens, EphemeralTokenProvider):
            await self.tokens.start()  # mint now, refresh in the background
        if self._ticker is None:
            self._ticker = self.create_task(self._tick_loop(), name="realtime-tick")

    async def _connect(self) -> None:
        await self._decide(lambda now: self.call.start(now))

    async def _disconnect(self) -> None:
        for task in (self._ticker, self._opener):
            if task is not None:
                await self.cancel_task(task)
        self._ticker = self._opener = None
        self.call.hang_up(self._now())
        self._generation += 1
        await super()._disconnect()

    async def cleanup(self) -> None:
        """Stop the token rotation along with the service."""
        await super().cleanup()
        await self.tokens.aclose()

    async def _tick_loop(self) -> None:
        while not self.call.machine.is_terminal:
            await asyncio.sleep(TICK_S)
            try:
                await self._decide(self.call.tick)
            except Exception as exc:  # a timer must never die with the call
                logger.exception(f"{self}: tick failed: {exc}")

    async def _auth_headers(self) -> dict[str, str]:
        secret = await self.tokens.secret()
        return {"Authorization": f"Bearer {secret.value}"} if secret.value else {}

    # -- the socket ------------------------------------------------------------------

    async def _open_after(self, delay_ms: int, refresh_secret: bool) -> None:
        await asyncio.sleep(delay_ms / 1000)
        opened = await self._open_socket(refresh_secret)
        if not isinstance(opened, ClientConnection):
            await self._decide(lambda now: self.call.connection_failed(opened, now))
            return
        self._generation += 1
        self._websocket = opened  # type: ignore[assignment]
        await self._decide(self.call.session_opened)
        self._receive_task = self.create_task(  # type: ignore[assignment]
            self._receive_task_handler(), name="realtime-recv"
        )

    async def _open_socket(self, refresh_secret: bool) -> ClientConnection | FailureSignal:
        try:
            if refresh_secret:
                with contextlib.suppress(FatalProviderError):
                    await self.tokens.refresh()  # a refused mint shows up on connect
            headers = await self._auth_headers()
        except FatalProviderError as exc:  # minting refused the long-lived key
            return minting_refused(exc)
        return await open_socket(self.base_url, headers)

    async def _receive_task_handler(self) -> None:
        ws, generation = self._websocket, self._generation
        assert ws is not None
        signal = None
        try:
            async for message in ws:
                await self._on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken socket ends this session
            if ws.close_code is None:
                signal = NetworkFailed(f"{type(exc).__name__}: {exc}")
        if generation != self._generation:
            return  # we closed it ourselves, or it was already replaced
        lost = signal or SocketClosed(ws.close_code or 1006, ws.close_reason or "")
        await self._decide(lambda now: self.call.connection_failed(lost, now))

    async def _on_message(self, message: str | bytes) -> None:
        try:
            event = parse_server_event(message)
        except RemoteProtocolError as exc:
            logger.warning(f"{self}: server message dropped: {exc}")
            return
        if event is not None:
            await self._decide(lambda now: self.call.server_event(event, now), message)

    # -- frames ------------------------------------------------------------------

    async def queue_frame(
        self,
        frame: Frame,
        direction: FrameDirection = FrameDirection.DOWNSTREAM,
        callback: Any = None,
    ) -> None:
        """An interruption is decided the moment it is queued, before any await.

        From downstream it is a processor's (a guardrail's); from upstream, the
        user aggregator's barge-in, which the server's VAD reported already
        when it is on (the core then sees the same barge-in twice, and cuts once).
        """
        if isinstance(frame, InterruptionFrame):
            if direction is FrameDirection.UPSTREAM:
                source = InterruptionSource.PROCESSOR
            elif self.call.config.turns.server_vad:
                source = InterruptionSource.SERVER_VAD
            else:
                source = InterruptionSource.LOCAL_VAD
            await self._decide(lambda now: self.call.interrupt(source, now, as_frame=True))
        await super().queue_frame(frame, direction, callback)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """pipecat's handling, plus the output's report that the bot went quiet."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.caller_frames_taken += 1  # the call's relay has it (sent, held or skipped)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            await self._decide(self.call.output_stopped)

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Remember tool results for the next session's seed, then push."""
        if isinstance(frame, FunctionCallResultFrame) and direction is FrameDirection.DOWNSTREAM:
            self.call.tool_answered(frame.function_name, str(frame.result))
        await super().push_frame(frame, direction)

    async def _handle_interruption(self) -> None:
        """Decided when the frame was queued (see :meth:`queue_frame`)."""

    async def _handle_user_stopped_speaking(self, frame: Any) -> None:
        if not self.call.config.turns.server_vad:
            await self._decide(lambda now: self.call.local_turn_ended(uuid.uuid4().hex, now))

    async def _send_user_audio(self, frame: InputAudioRawFrame) -> None:
        audio = frame.audio
        if self.g711_input is not None:
            audio = self.g711_input.audio(frame, frame.audio, frame.sample_rate)
        elif frame.sample_rate != OPENAI_SAMPLE_RATE:
            audio = await self._resampler.resample(audio, frame.sample_rate, OPENAI_SAMPLE_RATE)
        if audio:
            await self._decide(lambda now: self.call.user_audio(audio, frame.id, now))

    async def _create_response(self) -> None:
        await self.request_response()

    async def request_response(
        self, reason: ResponseReason = ResponseReason.APPLICATION, instructions: str | None = None
    ) -> None:
        """Ask for a response now, or right after the active one (never both at once).

        ``instructions`` asks for a line said as given (response-level
        instructions) rather than a reply to the conversation.
        """
        request_id = uuid.uuid4().hex
        await self._decide(
            lambda now: self.call.response_wanted(
                reason, request_id, now, instructions=instructions
            )
        )

    async def interrupt(
        self, source: InterruptionSource = InterruptionSource.APPLICATION, *, as_frame: bool = False
    ) -> None:
        """Interrupt the bot now: stop the output, cancel and truncate to what was heard.

        ``as_frame``: an interruption frame is on its way already (it stops the output).
        """
        await self._decide(lambda now: self.call.interrupt(source, now, as_frame=as_frame))

    async def send_client_event(self, event: rt.ClientEvent) -> None:
        """Send ``event``; a ``session.update`` carries the call's seed in its instructions.

        It also carries the call's audio formats: whatever sent it (pipecat, a
        rollover, a handoff, a guardrail), the session's audio never changes.
        """
        if isinstance(event, rt.SessionUpdateEvent):
            instructions = self.call.session_instructions(event.session.instructions or "")
            session = event.session.model_copy(update={"instructions": instructions})
            config = self.call.config
            session = with_audio_formats(session, config.input_format, config.output_format)
            event = event.model_copy(update={"session": session})
        await super().send_client_event(event)

    async def hand_over(self) -> None:
        """Let go of the call for another brain (see :meth:`RealtimeCall.switch_away`).

        The session's socket closes in the background: a stalled provider
        does not answer the close (up to ``CLOSE_TIMEOUT_S``), and the brain
        taking over must not wait for it (a median 380 ms of the switch in
        ``benchmarks/failover.py``'s stalls).
        """
        self._close_in_background = True
        try:
            await self._decide(self.call.switch_away)
        finally:
            self._close_in_background = False

    async def handed_over(self) -> None:
        """The other brain has the call now."""
        await self._decide(self.call.handed_over)

    async def take_back(self, heard: Sequence[Turn], *, timeout_ms: int) -> None:
        """Take the call back from the other brain (see :meth:`RealtimeCall.switch_back`).

        The new session is seeded from the call's record, never by pipecat's
        own conversation set-up (which would send its context again).
        """
        self._llm_needs_conversation_setup = False
        await self._decide(lambda now: self.call.switch_back(heard, now, timeout_ms=timeout_ms))

    async def probe(self, timeout_ms: int) -> ProbeFinished:
        """A health probe of this brain: a bare session open, with this call's URL and secret.

        Nothing is sent on the probe's socket (:class:`~voxpipe.call.probe.HealthProbe`).
        """
        return await run_probe(
            HealthProbe(timeout_ms=timeout_ms), self.base_url, self._auth_headers, self._now
        )

    @property
    def instructions(self) -> str:
        """The session's instructions as they stand (changed during the call or not)."""
        props = self.settings.session_properties  # type: ignore[attr-defined]
        return str(getattr(props, "instructions", None) or "")

    def note_token_event(self, event: SecretRotated | RotationFailed) -> None:
        """An :class:`EphemeralTokenProvider`'s ``on_event`` hook (called synchronously)."""
        commands = self.call.token_event(event)
        announce = self._carry_out(commands)
        try:
            self.create_task(announce, name="voxpipe-token-event")
        except Exception:  # before setup there is no task manager: keep the events
            announce.close()
            self.events += [c.event for c in commands if isinstance(c, Publish)]

    # -- carrying out ----------------------------------------------------------------

    async def _decide(
        self, decide: Callable[[int], Sequence[Command]], message: str | bytes = ""
    ) -> None:
        """Ask the core (with the time now), then carry out what it said.

        ``message`` is the server message being handled, for the commands that
        hand it to pipecat's own handler.
        """
        now = self._now()
        try:
            commands = decide(now)
        except IllegalTransitionError as exc:  # strict mode: a bug, so the call ends loudly
            logger.error(f"{self}: {exc}")
            commands = self.call.fail(exc, FailureClass.FATAL, now)
        await self._carry_out(commands, message)
        if self._llm_needs_conversation_setup and self.call.holds_conversation:
            # The session holds the conversation now: pipecat's set-up (its context sent
            # as items before the first response it creates) would send it again, and
            # until it ran pipecat would drop the messages an application appends.
            self._llm_needs_conversation_setup = False

    async def _carry_out(self, commands: Sequence[Command], message: str | bytes = "") -> None:
        for command in commands:
            await self._run(command, message)

    async def _run(self, command: Command, message: str | bytes) -> None:
        match command:
            case SendUserAudio():
                payload = base64.b64encode(command.audio).decode("ascii")
                await self._send_text(
                    json.dumps({"type": "input_audio_buffer.append", "audio": payload})
                )
            case SendEvent():
                await self._send_text(command.event.model_dump_json(exclude_none=True))
            case PlayAudio():
                await self._play(command)
            case Forward():
                await self._forward(command.event_type, message)
            case Publish():
                await self._publish(command.event)
            case CreateResponse(set_up_conversation=fresh):
                self._response_active = False  # the core decided; pipecat must not hold it back
                if not fresh:
                    # The session holds the conversation: pipecat's set-up would send
                    # the context again, as one more user message with the history.
                    self._llm_needs_conversation_setup = False
                await super()._create_response()
            case ResponseAudioEnded():
                await self.push_frame(TTSStoppedFrame())
            case StopOutput():
                await self.broadcast_interruption()
            case EndResponseOutput():
                await self._end_response_output()
            case BroadcastUserSpeech():
                await self.broadcast_frame(ProposedUserStartedSpeakingFrame)
            case UpdateSession():
                await self._send_session_update()
            case ReportError():
                await self.push_error(error_msg=command.message)
            case OpenSession():
                if self._opener is not None and self._opener is not asyncio.current_task():
                    await self.cancel_task(self._opener)  # one socket at a time
                self._opener = self.create_task(
                    self._open_after(command.delay_ms, command.refresh_secret),
                    name="realtime-open",
                )
            case CloseSession():
                await self._close_session()
            case EndCall():
                await self._end_call(command.error)

    async def _send_text(self, text: str) -> None:
        ws = self._websocket
        if ws is None:
            return  # no session: the core holds what matters (caller audio, requests)
        try:
            await ws.send(text)
        except Exception as exc:  # the reader sees the same failure and reports it
            logger.debug(f"{self}: send failed: {exc}")

    async def _play(self, command: PlayAudio) -> None:
        if command.new_item:
            # In order with the audio: the output's reports attribute what follows to it.
            await self.push_frame(PlaybackMarkerFrame(utterance_id=command.item_id))
        if command.new_response:
            await self.stop_ttfb_metrics()
            await self.push_frame(TTSStartedFrame())
        if self.call.plays(command.response_id):  # an interruption may have come meanwhile
            await self.push_frame(self._reply_frame(command.pcm))

    def _reply_frame(self, audio: bytes) -> TTSAudioRawFrame:
        """The reply's audio as a frame: PCM16 at 24 kHz, or G.711 with its PCM beside it."""
        fmt = self.call.config.output_format
        if fmt is AudioFormat.PCM16_24K:
            return TTSAudioRawFrame(audio=audio, sample_rate=OPENAI_SAMPLE_RATE, num_channels=1)
        pcm = AudioEncoding.of(fmt).decode(audio)
        return G711OutputAudioFrame(
            audio=pcm, sample_rate=G711_RATE, num_channels=1, g711=audio, g711_format=fmt
        )

    async def _forward(self, event_type: str, message: str | bytes) -> None:
        handler = PIPECAT_HANDLERS.get(event_type)
        evt = rt.parse_server_event(message) if handler is not None and message else None
        if handler is not None and evt is not None:
            await handler(self, evt)

    async def _publish(self, event: CallEvent) -> None:
        self.events.append(event)
        logger.debug(f"{self}: {event}")
        await self._call_event_handler("on_call_event", event)
        await self.push_frame(RealtimeCallEventFrame(event=event, at_ms=self.now_ms()))

    async def _end_response_output(self) -> None:
        await self.stop_all_metrics()
        if self._current_assistant_response:
            await self.push_frame(LLMFullResponseEndFrame())
        # No TTSStoppedFrame: the output transport would flush its resampler's
        # tail and play it after the interruption.
        self._current_assistant_response = None

    async def _close_session(self) -> None:
        opener = self._opener
        if opener is not None and not opener.done() and opener is not asyncio.current_task():
            await self.cancel_task(opener)  # a connect on its way must not open a session now
        ws, self._websocket = self._websocket, None
        self._generation += 1  # its reader's end is ours, not a failure
        self._api_session_ready = False
        self._open_function_calls = set()
        self._response_active = False
        if ws is not None and self._close_in_background:
            self.create_task(close_quietly(ws), name="voxpipe-close-handed-over")
        elif ws is not None:
            await close_quietly(ws)

    async def _end_call(self, error: Exception) -> None:
        logger.error(f"{self}: giving up: {error}")
        self.fatal_error = error
        await self._close_session()
        await self._call_event_handler("on_fatal_error", error)
        await self.push_error_frame(
            ErrorFrame(error=str(error), exception=error), force_treat_as_permanent=True
        )
        # The call cannot go on: end it now, whatever the worker's unusable policy.
        await self.push_frame(CancelWorkerFrame(reason=str(error)), FrameDirection.UPSTREAM)


__all__ = ["PIPECAT_HANDLERS", "RealtimeService", "TokenRotated", "monotonic_ms"]
