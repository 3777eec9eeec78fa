"""A stand-in for daily-python, built to its documentation (no tests here).

daily-python has no offline mode: its ``join()`` always asks Daily's API
first. pipecat's ``DailyTransport`` uses a small part of it, and this module
replaces exactly that part, behaving as daily-python's reference
(``daily/__init__.pyi`` and its API reference) describes:

- ``CallClient(event_handler=...)``: ``join(url, token, client_settings,
  completion)`` completes with ``(data, None)`` (``data["participants"]["local"]["id"]``,
  ``data["meetingSession"]["id"]``) or ``(None, error)``; ``leave(completion)``;
  ``release()``, which waits for a join still in progress (as measured on the
  real one); ``participants()`` keyed by id plus ``"local"``;
  ``set_audio_renderer(participant_id, callback, audio_source, sample_rate,
  callback_interval_ms)``, whose callback gets ``(participant_id, AudioData,
  audio_source)`` every interval, silence included, from a thread of the SDK's;
  the ``update_*`` calls answer their completion with ``None``.
- The event handler hears ``on_call_state_updated`` (joining, joined, leaving,
  left), ``on_participant_joined(participant)`` and
  ``on_participant_left(participant, reason)`` from the SDK's own thread, never
  the caller's (pipecat blocks that thread until its event loop took the event).
- ``CustomAudioSource(sample_rate, channels, auto_silence).write_frames(pcm,
  completion)``: the room's track takes 10 ms of audio every 10 ms (silence
  when nothing was written and ``auto_silence``), and the completion gets the
  number of frames once that write's last frame was taken. What the track took
  is the room's ground truth (:attr:`FakeRoom.heard`).
- Join errors name Daily's documented error types (``no-room``,
  ``exp-token``, ``not-allowed``); the real SDK's wording around them is not
  reproduced, only the type.

:func:`installed` puts the stand-in where pipecat's transport module looks for
daily-python, for one room.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

TICK_S = 0.01
_ids = itertools.count(1)


def now_ms() -> float:
    """The clock every fake stamps with (the transports' own: monotonic ms)."""
    return time.monotonic() * 1000


@dataclass(frozen=True)
class AudioData:
    """daily-python's ``AudioData``: 16-bit PCM and its shape."""

    audio_frames: bytes
    sample_rate: int
    num_channels: int = 1
    bits_per_sample: int = 16

    @property
    def num_audio_frames(self) -> int:
        return len(self.audio_frames) // 2 // self.num_channels


class _SdkThread:
    """The SDK's own thread: callbacks and completions run on it, in order."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fake-daily", daemon=True)
        self._thread.start()

    def call(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


@dataclass
class FakeHuman:
    """A person in the room: what they say is heard by whoever renders their audio."""

    room: FakeRoom
    name: str
    id: str = field(default_factory=lambda: f"human-{next(_ids)}")
    _mouth: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    said_ms: list[float] = field(default_factory=list)  # when each say() began to be sent

    @property
    def participant(self) -> dict[str, Any]:
        return {"id": self.id, "info": {"userName": self.name, "isLocal": False}}

    def say(self, pcm16_16k: bytes) -> None:
        """Speak ``pcm16_16k`` (mono, 16 kHz) from now on, after anything still queued."""
        with self._lock:
            self.said_ms.append(now_ms() + len(self._mouth) / 32)
            self._mouth.extend(pcm16_16k)

    @property
    def speaking(self) -> bool:
        with self._lock:
            return bool(self._mouth)

    def take(self, n_bytes: int) -> bytes:
        with self._lock:
            chunk = bytes(self._mouth[:n_bytes])
            del self._mouth[:n_bytes]
        return chunk + bytes(n_bytes - len(chunk))

    def leave(self, reason: str = "leftCall") -> None:
        self.room.leave(self, reason)


@dataclass
class Taken:
    """What the room's copy of the agent's track took in one 10 ms tick."""

    at_ms: float
    written: bool  # audio the agent wrote (not auto-silence)
    peak: int


@dataclass
class FakeRoom:
    """One Daily room: its URL, who may join, who is in it, what the agent's track played."""

    url: str = "https://voxpipe-test.daily.co/fake-room"
    private: bool = False
    tokens: dict[str, float] = field(default_factory=dict)  # token -> its exp (Unix s)
    join_error: str | None = None  # every join fails with this
    join_delay_s: float = 0.05  # Daily's API and SFU round trips
    humans: dict[str, FakeHuman] = field(default_factory=dict)
    heard: list[Taken] = field(default_factory=list)
    clients: list[FakeCallClient] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)  # the URLs agents tried to join
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the test's side --------------------------------------------------------------

    def human_joins(self, name: str) -> FakeHuman:
        human = FakeHuman(self, name)
        with self._lock:
            self.humans[human.id] = human
            clients = [c for c in self.clients if c.joined]
        for client in clients:
            client.sdk.call(lambda c=client: c.handler.on_participant_joined(human.participant))
        return human

    def leave(self, human: FakeHuman, reason: str) -> None:
        with self._lock:
            self.humans.pop(human.id, None)
            clients = [c for c in self.clients if c.joined]
        for client in clients:
            client.human_left(human, reason)

    def network(self, connection: str, event: str) -> None:
        """Daily reports one of its connections ``interrupted`` or ``connected`` again."""
        status = {"connection": connection, "event": event}
        for client in [c for c in self.clients if c.joined]:
            client.sdk.call(lambda c=client: c.handler.on_network_connection_status_updated(status))

    def eject_agent(self) -> None:
        """The room ejects the agent (an owner's eject, or the room's exp): its call is left."""
        for client in [c for c in self.clients if c.joined]:
            client.ejected()

    @property
    def agent_joined(self) -> bool:
        return any(c.joined for c in self.clients)

    @property
    def agent_left(self) -> bool:
        """The agent joined, and every client of it that did has left."""
        joined = [c for c in self.clients if c.ever_joined]
        return bool(joined) and all(c.left for c in joined)

    def written_ms(self, since_ms: float = 0.0, until_ms: float = float("inf")) -> float:
        """How much of the agent's own audio the room played between the two times."""
        return 10.0 * sum(
            1 for t in list(self.heard) if t.written and since_ms <= t.at_ms < until_ms
        )

    def loud_ms(self, since_ms: float = 0.0, threshold: int = 1000) -> float:
        """How much loud audio from the agent the room played since ``since_ms``."""
        return 10.0 * sum(1 for t in list(self.heard) if t.peak > threshold and t.at_ms >= since_ms)

    def runs(self, since_ms: float = 0.0, gap_ms: float = 200.0) -> list[tuple[float, float]]:
        """The agent's stretches of written audio since ``since_ms``: (first tick, ms written).

        A stretch ends at a gap longer than ``gap_ms`` (one reply streams without one).
        """
        out: list[tuple[float, float]] = []
        last = -float("inf")
        for tick in [t for t in list(self.heard) if t.written and t.at_ms >= since_ms]:
            if tick.at_ms - last > gap_ms:
                out.append((tick.at_ms, 0.0))
            out[-1] = (out[-1][0], out[-1][1] + 10.0)
            last = tick.at_ms
        return out

    def last_written_ms(self) -> float | None:
        written = [t.at_ms for t in list(self.heard) if t.written]
        return written[-1] if written else None

    # -- daily-python's side ----------------------------------------------------------

    def refusal(self, url: str, token: str | None) -> str | None:
        """Why a join of ``url`` with ``token`` fails (Daily's error types), or None."""
        if self.join_error is not None:
            return self.join_error
        if url.rstrip("/") != self.url:
            return f"no-room: the room {url} does not exist"
        if token is not None and token in self.tokens and self.tokens[token] < time.time():
            return "exp-token: the meeting token has expired"
        if self.private and token not in self.tokens:
            return "not-allowed: this room is private and needs a meeting token"
        return None


class FakeCallClient:
    """daily-python's ``CallClient`` in :attr:`room` (see the module docstring)."""

    room: FakeRoom  # set by installed()

    def __init__(self, event_handler: Any = None) -> None:
        self.handler = event_handler
        self.sdk = _SdkThread()
        self.local_id = f"agent-{uuid.uuid4().hex[:8]}"
        self.user_name = ""
        self.joined = False
        self.ever_joined = False
        self.left = False
        self.released = False
        self._join_done = threading.Event()
        self._join_done.set()
        self._renderers: dict[str, threading.Event] = {}
        with self.room._lock:
            self.room.clients.append(self)

    # -- joining and leaving ----------------------------------------------------------

    def set_user_name(self, user_name: str) -> None:
        self.user_name = user_name

    def join(
        self,
        meeting_url: str,
        meeting_token: str | None = None,
        client_settings: Any = None,
        completion: Callable[..., None] | None = None,
    ) -> None:
        self.room.joins.append(meeting_url)
        self._join_done.clear()
        self._state("joining")
        threading.Thread(
            target=self._joining, args=(meeting_url, meeting_token, completion), daemon=True
        ).start()

    def _joining(self, url: str, token: str | None, completion: Callable[..., None] | None) -> None:
        time.sleep(self.room.join_delay_s)
        refusal = self.room.refusal(url, token)

        def done() -> None:
            if refusal is None:
                self.joined = self.ever_joined = True
                self.handler.on_call_state_updated("joined")
                data = {
                    "participants": {"local": self._local()},
                    "meetingSession": {"id": f"session-{uuid.uuid4().hex[:8]}"},
                }
                if completion is not None:
                    completion(data, None)
            else:
                self.handler.on_call_state_updated("leaving")
                self.handler.on_call_state_updated("left")
                if completion is not None:
                    completion(None, refusal)
            self._join_done.set()

        self.sdk.call(done)

    def leave(self, completion: Callable[..., None] | None = None) -> None:
        def done() -> None:
            self.handler.on_call_state_updated("leaving")
            self._stop_renderers()
            self.joined = False
            self.left = True
            self.handler.on_call_state_updated("left")
            if completion is not None:
                completion(None)

        self.sdk.call(done)

    def ejected(self) -> None:
        def done() -> None:
            self._stop_renderers()
            self.joined = False
            self.left = True
            self.handler.on_call_state_updated("left")

        self.sdk.call(done)

    def release(self) -> None:
        self._join_done.wait()  # as the real one: a release waits for a join in progress
        self._stop_renderers()
        self.released = True
        self.joined = False
        self.sdk.stop()

    def human_left(self, human: FakeHuman, reason: str) -> None:
        stop = self._renderers.pop(human.id, None)
        if stop is not None:
            stop.set()
        self.sdk.call(lambda: self.handler.on_participant_left(human.participant, reason))

    # -- what pipecat asks ------------------------------------------------------------

    def participants(self) -> dict[str, Any]:
        with self.room._lock:
            present = {h.id: h.participant for h in self.room.humans.values()}
        return {"local": self._local(), **present}

    def participant_counts(self) -> dict[str, int]:
        return {"present": len(self.room.humans) + 1, "hidden": 0}

    def set_audio_renderer(
        self,
        participant_id: str,
        callback: Callable[[str, AudioData, str], None],
        audio_source: str = "microphone",
        sample_rate: int = 16000,
        callback_interval_ms: int = 20,
    ) -> None:
        human = self.room.humans.get(participant_id)
        if human is None:
            return
        if sample_rate != 16_000:
            raise NotImplementedError("the fake room's humans speak at 16 kHz")
        stop = threading.Event()
        self._renderers[participant_id] = stop
        threading.Thread(
            target=self._render,
            args=(human, callback, audio_source, callback_interval_ms, stop),
            name=f"fake-daily-renderer-{participant_id}",
            daemon=True,
        ).start()

    def _render(
        self,
        human: FakeHuman,
        callback: Callable[[str, AudioData, str], None],
        audio_source: str,
        interval_ms: int,
        stop: threading.Event,
    ) -> None:
        n_bytes = 16 * interval_ms * 2
        due = time.monotonic()
        while not stop.is_set() and not self.released:
            data = AudioData(human.take(n_bytes), 16_000)
            callback(human.id, data, audio_source)
            due += interval_ms / 1000
            time.sleep(max(0.0, due - time.monotonic()))

    def _stop_renderers(self) -> None:
        for stop in self._renderers.values():
            stop.set()
        self._renderers.clear()

    def update_subscription_profiles(self, profile_settings: Any, completion: Any = None) -> None:
        self._complete(completion)

    def update_subscriptions(
        self, participant_settings: Any = None, profile_settings: Any = None, completion: Any = None
    ) -> None:
        self._complete(completion)

    def update_inputs(self, input_settings: Any, completion: Any = None) -> None:
        self._complete(completion)

    def update_publishing(self, publishing_settings: Any, completion: Any = None) -> None:
        self._complete(completion)

    def update_remote_participants(self, remote_participants: Any, completion: Any = None) -> None:
        self._complete(completion)

    def send_app_message(
        self,
        message: Any,
        participant_id: Any = None,
        serialize_none: bool = True,
        completion: Any = None,
    ) -> None:
        self._complete(completion)

    def _complete(self, completion: Callable[..., None] | None) -> None:
        if completion is not None:
            self.sdk.call(lambda: completion(None))

    def _state(self, state: str) -> None:
        self.sdk.call(lambda: self.handler.on_call_state_updated(state))

    def _local(self) -> dict[str, Any]:
        return {"id": self.local_id, "info": {"userName": self.user_name, "isLocal": True}}


class FakeCustomAudioSource:
    """daily-python's ``CustomAudioSource``: the room's track takes 10 ms every 10 ms."""

    room: FakeRoom  # set by installed()

    def __init__(self, sample_rate: int, channels: int, auto_silence: bool = True) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.auto_silence = auto_silence
        self._pending: list[tuple[bytearray, Callable[[int], None] | None, int]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._play, name="fake-daily-track", daemon=True).start()

    def write_frames(self, frame: bytes, completion: Callable[[int], None] | None = None) -> int:
        frames = len(frame) // 2 // self.channels
        with self._lock:
            self._pending.append((bytearray(frame), completion, frames))
        return frames

    def stop(self) -> None:
        self._stopped.set()

    def _play(self) -> None:
        tick_bytes = self.sample_rate // 100 * 2 * self.channels
        due = time.monotonic()
        while not self._stopped.is_set():
            taken, done = self._take(tick_bytes)
            if taken is not None or self.auto_silence:
                peak = int(np.abs(np.frombuffer(taken, dtype="<i2")).max()) if taken else 0
                self.room.heard.append(Taken(now_ms(), taken is not None, peak))
            for completion, frames in done:
                if completion is not None:
                    completion(frames)
            due += TICK_S
            time.sleep(max(0.0, due - time.monotonic()))

    def _take(
        self, n_bytes: int
    ) -> tuple[bytes | None, list[tuple[Callable[[int], None] | None, int]]]:
        out = bytearray()
        done: list[tuple[Callable[[int], None] | None, int]] = []
        with self._lock:
            while self._pending and len(out) < n_bytes:
                buffer, completion, frames = self._pending[0]
                piece = buffer[: n_bytes - len(out)]
                out.extend(piece)
                del buffer[: len(piece)]
                if not buffer:
                    self._pending.pop(0)
                    done.append((completion, frames))
        return (bytes(out) if out else None), done


class FakeCustomAudioTrack:
    """daily-python's ``CustomAudioTrack``: an id for ``client_settings``."""

    def __init__(self, audio_source: FakeCustomAudioSource) -> None:
        self.source = audio_source
        self.id = f"track-{uuid.uuid4().hex[:8]}"


class FakeDailyStatics:
    """daily-python's ``Daily``: ``init`` once per process, nothing else pipecat needs here."""

    @staticmethod
    def init(worker_threads: int = 2, log_level: Any = None) -> None:
        return None


def call_tasks(before: set[asyncio.Task[Any]], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Tasks started since ``before`` and still there, but those from files named in ``ignore``."""
    current = asyncio.current_task()
    left = []
    for task in asyncio.all_tasks() - before:
        code = task.get_coro().cr_code  # type: ignore[union-attr]
        if task is current or any(name in code.co_filename for name in ignore):
            continue
        left.append(f"{task.get_name()} ({code.co_qualname})")
    return left


@contextlib.contextmanager
def installed(monkeypatch: pytest.MonkeyPatch, room: FakeRoom) -> Iterator[FakeRoom]:
    """daily-python's stand-in, for ``room``, where pipecat's Daily transport looks for it."""
    import pipecat.transports.daily.transport as daily_transport

    client = type("CallClient", (FakeCallClient,), {"room": room})
    source = type("CustomAudioSource", (FakeCustomAudioSource,), {"room": room})
    sources: list[FakeCustomAudioSource] = []

    def make_source(*args: Any, **kwargs: Any) -> FakeCustomAudioSource:
        made = source(*args, **kwargs)
        sources.append(made)
        return made

    monkeypatch.setattr(daily_transport, "CallClient", client)
    monkeypatch.setattr(daily_transport, "CustomAudioSource", make_source)
    monkeypatch.setattr(daily_transport, "CustomAudioTrack", FakeCustomAudioTrack)
    monkeypatch.setattr(daily_transport, "Daily", FakeDailyStatics)
    # pipecat calls Daily.init() once per process; the real one still needs its own call.
    monkeypatch.setattr(daily_transport.DailyTransportClient, "_daily_initialized", False)
    try:
        yield room
    finally:
        for made in sources:
            made.stop()
        for c in room.clients:
            c.sdk.stop()
