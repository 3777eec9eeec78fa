"""One Daily room session as a live transport: pipecat's ``DailyTransport``, made a voxpipe one.

On top of pipecat's ``DailyTransport`` (daily-python) it

- reports playback through the seam (:class:`~voxpipe.transports.playback_reports.ReportsPlayback`):
  daily-python's ``CustomAudioSource.write_frames`` completes once the room's
  track has taken the audio, at real time, so each chunk is reported as it
  starts leaving for the room and a cut lands where that stream stopped;
- lets through only the audio of the participant the agent listens to (see
  :class:`~voxpipe.daily.room.Room`), records it and the bot's audio for
  ``call.wav``, and plays nothing to an empty room;
- bounds the join: pipecat waits on daily-python's ``join()`` for as long as
  it takes (about 19 s to fail without Daily's API, measured), this gives up
  after ``join_timeout_s`` and says why (:class:`~voxpipe.errors.DailyJoinFailed`);
- keeps the room's liveness: alive while joined and its network connected;
  closed when the call ends (the last human left, the bot was ejected, the
  join failed).

Room decisions that need the agent's graph (greet, cancel an answer) go to
``decisions_to`` (:mod:`voxpipe.transports.daily.call` sets it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
    UserAudioRawFrame,
)
from pipecat.transports.daily.transport import (
    DailyInputTransport,
    DailyOutputTransport,
    DailyParams,
    DailyTransport,
    DailyTransportClient,
)

from voxpipe.daily.joins import join_failed, join_timed_out, room_name
from voxpipe.daily.room import EndCall, EndWhen, Participant, Room, RoomDecision
from voxpipe.errors import DailyJoinFailed
from voxpipe.observability.capture import CaptureLog
from voxpipe.transports.playback_reports import ReportsPlayback
from voxpipe.transports.recording import CallRecording
from voxpipe.webrtc.liveness import PeerLiveness

IN_RATE = 16_000
OUT_RATE = 24_000
JOIN_TIMEOUT_S = 15.0
SILENT_MS = 10_000  # the room's network interrupted this long: the call is gone
TICK_S = 0.5
_TIMED_OUT = "voxpipe: join timed out"

Decisions = Callable[[RoomDecision], Awaitable[None]]


def monotonic_ms() -> float:
    """The transport's clock (monotonic milliseconds), shared by its reports and recording."""
    return time.monotonic() * 1000


def room_params(*, in_rate: int = IN_RATE, out_rate: int = OUT_RATE) -> DailyParams:
    """Audio in (each participant's own track) and out, 20 ms output chunks, no video."""
    return DailyParams(
        audio_in_enabled=True,
        audio_in_sample_rate=in_rate,
        audio_in_user_tracks=True,
        audio_out_enabled=True,
        audio_out_sample_rate=out_rate,
        audio_out_10ms_chunks=2,
        audio_out_end_silence_secs=0,
        camera_out_enabled=False,
        video_in_enabled=False,
        video_out_enabled=False,
    )


class RoomClient(DailyTransportClient):
    """pipecat's Daily client with a join deadline.

    daily-python's ``release()`` waits for a join still in progress (17 s of
    its 19 s, measured), so after a timed-out join the release goes to a
    thread of its own that nothing waits on: the call ends on time and no
    asyncio task is left behind.
    """

    join_timeout_s: float = JOIN_TIMEOUT_S
    join_timed_out: bool = False

    async def _join(self) -> tuple[Any, Any]:
        try:
            return await asyncio.wait_for(super()._join(), self.join_timeout_s)
        except TimeoutError:
            self.join_timed_out = True
            return (None, _TIMED_OUT)

    def _cleanup(self) -> None:
        if not self.join_timed_out:
            super()._cleanup()
            return
        release = super()._cleanup
        threading.Thread(target=release, name="daily-release", daemon=True).start()


class DailyCallInput(DailyInputTransport):
    """pipecat's Daily input, passing on (and recording) only the listened-to participant."""

    def __init__(self, call: DailyCallTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(call, *args, **kwargs)
        self._call = call
        self.started = False  # the pipeline's StartFrame reached it

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self.started = True
        await self._call.admit_present()

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        if isinstance(frame, UserAudioRawFrame) and not self._call.room.hears(frame.user_id):
            return
        now = self._call.now_ms()
        self._call.recording.caller_audio(frame.id, frame.audio, frame.sample_rate, now)
        await super().push_audio_frame(frame)


class _RoomOutput(DailyOutputTransport):
    """pipecat's Daily output that plays nothing to an empty room, and ticks the liveness."""

    def __init__(self, call: DailyCallTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(call, *args, **kwargs)
        self._call = call
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._call.tick()  # the join may have been a while ago: the room is there now
        if self._ticker is None:
            self._ticker = self.create_task(self._tick_loop(), name="daily-liveness")

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_ticking()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_ticking()
        await super().cancel(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._call.room.empty:
            return False  # nobody would hear it
        written: bool = await super().write_audio_frame(frame)
        return written

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._call.tick()

    async def _stop_ticking(self) -> None:
        if self._ticker is not None:
            await self.cancel_task(self._ticker)
            self._ticker = None


class DailyCallOutput(ReportsPlayback, _RoomOutput):
    """The room's output, reporting playback through the seam and recording what it sends."""

    def now_ms(self) -> float:
        return self._call.now_ms()

    def audio_played(self, frame: OutputAudioRawFrame, started_ms: float) -> None:
        self._call.recording.bot_audio(frame.audio, frame.sample_rate, started_ms)


class DailyCallTransport(DailyTransport):
    """The agent in one Daily room session (see the module docstring).

    Args:
        room_url: the room (``https://TEAM.daily.co/ROOM``); checked before joining.
        token: a meeting token (needed for private rooms).
        bot_name: the agent's name in the room.
        listen_to: listen only to the participant of this name (default: the first).
        end_when: when the call ends on its own (default: the last human left).
        join_timeout_s: give up joining after this long.
        silent_ms: a room whose network stays interrupted this long is gone.
        record_audio: keep both sides' audio for ``call.wav``.
        now_ms: the clock of its reports, recording and liveness.
    """

    def __init__(
        self,
        room_url: str,
        token: str | None = None,
        bot_name: str = "voxpipe",
        params: DailyParams | None = None,
        *,
        listen_to: str | None = None,
        end_when: EndWhen = EndWhen.LAST_HUMAN_LEFT,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        silent_ms: int = SILENT_MS,
        record_audio: bool = True,
        now_ms: Callable[[], float] = monotonic_ms,
    ) -> None:
        room_name(room_url)  # a malformed URL fails now, not after the join timeout
        params = params or room_params()
        super().__init__(room_url, token, bot_name, params)
        self._client = _with_deadline(self._client, room_url, token, bot_name, params, self.name)
        self._client.join_timeout_s = join_timeout_s
        self.bot_name = bot_name
        self.join_timeout_s = join_timeout_s
        self.now_ms = now_ms
        self.room = Room(listen_to=listen_to, end_when=end_when)
        self.recording = CallRecording(
            now_ms,
            in_sample_rate=params.audio_in_sample_rate or IN_RATE,
            out_sample_rate=params.audio_out_sample_rate or OUT_RATE,
            keep_audio=record_audio,
        )
        # Connected once joined; a join that fails is a close, one that hangs never connects.
        self.liveness = PeerLiveness(
            timeout_ms=silent_ms, connect_timeout_ms=join_timeout_s * 1000 + 2_000
        )
        self.liveness.opened(now_ms())
        self.failure: DailyJoinFailed | None = None
        self.joined_ms: float | None = None
        self.decisions_to: Decisions | None = None
        self.decided: list[RoomDecision] = []
        self._interrupted: set[str] = set()  # Daily's connections now interrupted
        self._present_at_join: list[Mapping[str, Any]] = []
        self._register_room_handlers()

    @property
    def client(self) -> RoomClient:
        """pipecat's client for this room (with the join deadline)."""
        assert isinstance(self._client, RoomClient)
        return self._client

    def input(self) -> DailyCallInput:
        if not self._input:
            self._input = DailyCallInput(self, self._client, self._params, name=self._input_name)
        assert isinstance(self._input, DailyCallInput)
        return self._input

    def output(self) -> DailyCallOutput:
        if not self._output:
            self._output = DailyCallOutput(self, self._client, self._params, name=self._output_name)
        assert isinstance(self._output, DailyCallOutput)
        return self._output

    def tick(self) -> None:
        """The room is still there while joined and its network connected (every 0.5 s)."""
        if self.joined_ms is not None and not self._interrupted:
            self.liveness.heard(self.now_ms())

    # -- what the room says ---------------------------------------------------------

    def _register_room_handlers(self) -> None:
        handlers: dict[str, Callable[..., Awaitable[None]]] = {
            "on_joined": self._joined,
            "on_error": self._errored,
            "on_participant_joined": self._participant_joined,
            "on_participant_left": self._participant_left,
            "on_call_state_updated": self._call_state_updated,
            "on_network_connection_status_updated": self._network_status,
        }
        for name, handler in handlers.items():
            self.add_event_handler(name, handler)

    async def _joined(self, _transport: Any, data: Mapping[str, Any]) -> None:
        now = self.now_ms()
        self.joined_ms = now
        self.liveness.connected(now)
        logger.info(f"joined {self.room_url} as {self.bot_name}")
        # Humans already in the room when the agent arrived count as joined once the
        # pipeline runs (a greeting needs it); pipecat captures only later joins' audio.
        self._present_at_join = [
            participant
            for participant_id, participant in self.participants().items()
            if participant_id != "local" and not participant.get("info", {}).get("isLocal")
        ]
        if self.input().started:
            await self.admit_present()

    async def admit_present(self) -> None:
        """Take in the humans who were in the room before the agent (joined, and started)."""
        present, self._present_at_join = self._present_at_join, []
        for participant in present:
            await self.input().capture_participant_audio(
                str(participant["id"]), "microphone", self.client.in_sample_rate
            )
            await self._decide(self.room.joined(Participant.from_daily(participant), self.now_ms()))

    async def _errored(self, _transport: Any, error: str) -> None:
        if self.joined_ms is not None or self.failure is not None:
            logger.warning(f"{self.room_url}: {error}")
            return
        if self.client.join_timed_out:
            self.failure = join_timed_out(self.room_url, self.join_timeout_s)
        else:
            self.failure = join_failed(self.room_url, error)
        logger.error(str(self.failure))
        self.liveness.closed(self.now_ms())

    async def _participant_joined(self, _transport: Any, participant: Mapping[str, Any]) -> None:
        await self._decide(self.room.joined(Participant.from_daily(participant), self.now_ms()))

    async def _participant_left(
        self, _transport: Any, participant: Mapping[str, Any], reason: str
    ) -> None:
        logger.info(f"{participant.get('id')} left {self.room_url} ({reason})")
        await self._decide(self.room.left(str(participant["id"]), self.now_ms()))

    async def _call_state_updated(self, _transport: Any, state: str) -> None:
        if state == "left" and self.joined_ms is not None:
            self.liveness.closed(self.now_ms())  # ejected, or the room ended under us

    async def _network_status(self, _transport: Any, status: Mapping[str, Any]) -> None:
        # Signalling, sending and receiving each report on their own; all must be up.
        connection = str(status.get("connection"))
        if status.get("event") == "interrupted":
            self._interrupted.add(connection)
        else:
            self._interrupted.discard(connection)
            self.tick()

    async def _decide(self, decisions: list[RoomDecision]) -> None:
        for decision in decisions:
            self.decided.append(decision)
            if isinstance(decision, EndCall):
                self.liveness.closed(self.now_ms())
            if self.decisions_to is not None:
                await self.decisions_to(decision)

    # What the call's instruments ask a transport (CaptureStamps, PlaybackReports).

    @property
    def captures(self) -> CaptureLog:
        """Caller frames by id, stamped when they arrived."""
        return self.recording.captures

    def first_played_ms(self, since_ms: float) -> float | None:
        """When the first bot chunk at or after ``since_ms`` left for the room."""
        return self.recording.first_played_ms(since_ms)


def _with_deadline(
    stock: DailyTransportClient,
    room_url: str,
    token: str | None,
    bot_name: str,
    params: DailyParams,
    transport_name: str,
) -> RoomClient:
    """pipecat's client rebuilt as a :class:`RoomClient`, its own released unjoined.

    pipecat builds its client inside ``DailyTransport.__init__`` and takes no
    other; the callbacks it wired there are the transport's own.
    """
    client = RoomClient(room_url, token, bot_name, params, stock._callbacks, transport_name)
    stock._cleanup()  # never joined: daily-python releases it at once
    return client
