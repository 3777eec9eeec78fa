"""``voxpipe batch --backend ray``: the batch's models on a pool of Ray actors.

Ray, not a home-made queue, carries the work across machines. The driver
(:func:`voxpipe.pipelines.batch.run_batch`) still lists, skips, decodes and
writes; each actor loads the engines once, with Whisper's and llama.cpp's
thread counts pinned to the CPUs Ray gave it, receives a decoded recording
(bytes, so no shared file system is needed) and returns the answer with its
reply audio. A file's own failure comes back as its row's error and is never
retried. A worker process that dies (killed, out of memory, its node lost) is
restarted by Ray and rejoins the pool once its engines are loaded again; its
file goes to the next free actor, at most ``max_attempts`` times in all, and
the row counts the retries. A lost node's actors come back only when the
cluster has room for them; the other actors carry the job meanwhile.

Ray is an optional extra: this module imports without it, and
:func:`require_ray` turns its absence into a :class:`ConfigError` that names
the extra before the driver touches any file.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from typing import Any

from loguru import logger

from voxpipe.engines import LlamaEngine, LocalEngines, WhisperEngine, make_tts
from voxpipe.errors import ConfigError
from voxpipe.pipelines.batch import BATCH_SEED, Delivered, Failed, Job, Outcome, answer_job

EnginesFactory = Callable[[int], LocalEngines]
"""Builds an actor's engines for a thread count; runs in the actor's process."""

DEFAULT_MAX_ATTEMPTS = 3
# The object store only carries one recording and one reply per actor at a time.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
# Ray runs its workers at niceness 15 so its own daemons stay responsive; here the actors are
# the job, and at 15 anything else on the machine starves them (a turn took 37 s at load 10).
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}
# How often the driver says that a lost worker is still waiting for room on the cluster.
REVIVE_NOTICE_S = 60.0
RAY_EXTRA_HINT = "install the ray extra: pip install 'voxpipe[ray]'"


class Address(enum.Enum):
    """Where the driver finds its cluster (anything else is a Ray address as given)."""

    LOCAL = "local"  # start a Ray instance on this machine for this job
    AUTO = "auto"  # join the cluster this machine is part of (`ray start` ran here)


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"--backend ray needs Ray, which is not installed ({exc})", hint=RAY_EXTRA_HINT
        ) from exc
    return ray


def load_engines(threads: int) -> LocalEngines:
    """The real engines for one actor, their thread pools sized to its CPUs."""
    return LocalEngines(
        stt=WhisperEngine(cpu_threads=threads),
        llm=LlamaEngine(n_threads=threads, seed=BATCH_SEED),
        tts=make_tts(),
    )


class Answerer:
    """One Ray actor: the engines, loaded once when the actor (re)starts."""

    def __init__(self, threads: int, factory: EnginesFactory) -> None:
        self._engines = factory(threads)

    def ready(self) -> int:
        """Returns once the engines are loaded: the actor's process id."""
        return os.getpid()

    def answer(self, job: Job) -> Outcome:
        return asyncio.run(answer_job(self._engines, job))


class RayBackend:
    """A pool of :class:`Answerer` actors, one file in flight on each.

    ``address``: ``local`` starts Ray on this machine (no dashboard) and stops
    it at the end; ``auto`` or a cluster's address joins it. When Ray is
    already initialised in this process (an application or a test did it) the
    backend uses that connection and leaves it up. ``workers`` None fills the
    cluster's CPUs with actors of ``cpus_per_worker`` each.
    """

    def __init__(
        self,
        *,
        address: str = Address.LOCAL.value,
        workers: int | None = None,
        cpus_per_worker: int = 1,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        engines_factory: EnginesFactory | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        if cpus_per_worker < 1:
            raise ConfigError(f"--cpus-per-worker must be at least 1, not {cpus_per_worker}")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {max_attempts}")
        self._ray = require_ray()
        self._address = address
        self._workers = workers
        self._cpus = cpus_per_worker
        self._max_attempts = max_attempts
        self._factory = engines_factory  # None: load_engines, looked up when the pool starts
        self._owns_ray = False
        self._actors: list[Any] = []
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._reviving: set[asyncio.Task[None]] = set()

    @property
    def slots(self) -> int:
        return len(self._actors)

    @property
    def actors(self) -> list[Any]:
        """The actor handles (tests and benchmarks kill or time them)."""
        return list(self._actors)

    async def start(self) -> None:
        """Connect, place the actors and wait until each has loaded its engines."""
        ray = self._ray
        if not ray.is_initialized():
            self._connect()  # on this thread: Ray installs its signal handlers on the main one
            self._owns_ray = True
        total = int(ray.cluster_resources().get("CPU", 0))
        workers = self._workers or max(1, total // self._cpus)
        if workers * self._cpus > total:
            raise ConfigError(
                f"{workers} workers of {self._cpus} CPUs need {workers * self._cpus} CPUs; "
                f"the Ray cluster has {total}",
                hint="lower --workers or --cpus-per-worker, or add nodes",
            )
        self._actors = [self._new_actor() for _ in range(workers)]
        try:
            await asyncio.gather(*(a.ready.remote() for a in self._actors))
        except ray.exceptions.RayError as exc:
            await self.close()
            raise ConfigError(
                f"the Ray workers could not load the engines: {exc}",
                hint="install voxpipe with its models on every node (make install)",
            ) from exc
        for a in self._actors:
            self._idle.put_nowait(a)

    def _new_actor(self) -> Any:
        actor = self._ray.remote(Answerer).options(
            num_cpus=self._cpus,
            max_restarts=-1,  # a lost worker comes back; the file's attempts are bounded
            max_task_retries=0,  # the driver resends, so it can count and bound the retries
        )
        return actor.remote(self._cpus, self._factory or load_engines)

    def _connect(self) -> None:
        ray = self._ray
        try:
            if self._address == Address.LOCAL.value:
                ray.init(
                    # "local", not None: None joins any Ray already running on this
                    # machine (Ray finds its GCS processes), someone else's included.
                    address="local",
                    include_dashboard=False,
                    log_to_driver=False,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    _system_config=LOCAL_SYSTEM_CONFIG,
                )
            else:
                ray.init(address=self._address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot reach a Ray cluster at {self._address!r}: {exc}",
                hint="--address local starts one here; auto joins this machine's cluster",
            ) from exc

    async def answer(self, job: Job) -> Delivered:
        """Answer on the first free actor; a lost worker's file goes to the next free one.

        The lost actor is revived in the background and rejoins the pool when
        it is ready, so a file is never held for its own actor: when a node is
        lost, Ray can only restart its actors once the cluster has room again,
        and the surviving actors carry on meanwhile.
        """
        for attempt in range(self._max_attempts):
            actor = await self._idle.get()
            lost = False
            try:
                outcome: Outcome = await actor.answer.remote(job)
                return Delivered(outcome, retries=attempt)
            except self._ray.exceptions.RayActorError as exc:
                lost = True
                logger.warning(
                    "batch: the worker answering {} was lost (attempt {} of {}): {}",
                    job.name,
                    attempt + 1,
                    self._max_attempts,
                    type(exc).__name__,
                )
            finally:  # answered, lost or cancelled: the actor goes back to the pool
                if lost:
                    self._rejoin_later(actor)
                else:
                    self._idle.put_nowait(actor)
        error = f"{job.label}: its worker was lost on all {self._max_attempts} attempts"
        return Delivered(Failed(error), retries=self._max_attempts - 1)

    def _rejoin_later(self, actor: Any) -> None:
        task = asyncio.create_task(self._rejoin(actor))
        self._reviving.add(task)
        task.add_done_callback(self._reviving.discard)

    async def _rejoin(self, actor: Any) -> None:
        revived = asyncio.create_task(self._revive(actor))
        try:
            # No room for it (its node gone, the rest busy) means it waits: say so now and then.
            while not revived.done():
                done, _ = await asyncio.wait({revived}, timeout=REVIVE_NOTICE_S)
                if not done:
                    logger.warning(
                        "batch: a lost Ray worker ({} CPUs) is still not back; the cluster "
                        "may have no room for it. The other workers go on.",
                        self._cpus,
                    )
        finally:  # closing: the revival stops with it, so no replacement outlives the pool
            revived.cancel()
        self._idle.put_nowait(revived.result())

    async def _revive(self, actor: Any) -> Any:
        """The actor once Ray has restarted it (its engines loaded again), or a new actor.

        A restarting actor refuses calls at once (ActorUnavailableError) rather
        than queueing them, so its readiness is asked again with a growing pause.
        """
        exceptions = self._ray.exceptions
        pause = 0.05
        while True:
            try:
                await actor.ready.remote()
                return actor
            except exceptions.ActorDiedError:  # for good: a new one (a failed one costs an attempt)
                replacement = self._new_actor()
                self._actors[self._actors.index(actor)] = replacement
                return replacement
            except exceptions.RayActorError:  # restarting (ActorUnavailableError) or in between
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def close(self) -> None:
        for task in list(self._reviving):
            task.cancel()
        await asyncio.gather(*self._reviving, return_exceptions=True)
        for a in self._actors:
            self._ray.kill(a, no_restart=True)
        self._actors = []
        if self._owns_ray:
            await asyncio.to_thread(self._ray.shutdown)
            self._owns_ray = False
