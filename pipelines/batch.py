"""The chained fallback as a batch job: recordings in (a folder, a glob or a manifest), answers out.

Voicemail-style: each recording is one caller turn. For each file the job
writes ``<stem>.json`` (transcript, reply, timings) and ``<stem>.reply.wav``,
and at the end ``summary.json`` with every file's status. A bad file is
recorded with its error and the rest go on; files already answered are
skipped unless ``force``. Results are written atomically, so an interrupted
job loses nothing it finished and a re-run picks up where it stopped.

Every visible entry of the folder is accounted for: a FIFO, a socket, a
broken or looping symlink or a directory named like audio is an error row
(never opened, so never a hang); only a plain subfolder is passed over. A
recording longer than ``max_audio_secs`` is an error row, judged from its
header before it is decoded. Whatever a file raises, it costs that file's row
and ``summary.json`` is still written.

The driver here lists, skips, decodes and writes; a :class:`BatchBackend`
runs the models: :class:`AsyncioBackend` in this process (the default), or
:class:`voxpipe.pipelines.batch_ray.RayBackend` on a Ray cluster. Only the
driver touches ``OUT_DIR``, so a cluster needs no shared file system and
whether a file is done is decided in one place. Each row is appended to
``summary.jsonl`` as it finishes (a long job can be watched); the rows carry
``retries``, the times a lost worker made the file start over.
"""

from __future__ import annotations

import asyncio
import enum
import glob
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from voxpipe.engines import LlamaEngine, LocalEngines, shared_stt, shared_tts
from voxpipe.engines.reply import run_turn
from voxpipe.engines.shared import shared_model
from voxpipe.errors import AudioFormatError, ConfigError
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
from voxpipe.processors.local.vad import speech_ms
from voxpipe.transports.audio_file import SUPPORTED, load_audio, write_wav

MIN_SPEECH_MS = 150
# One recording is one caller turn (voicemail-style); longer is almost surely a mistake.
DEFAULT_MAX_AUDIO_SECS = 600.0


class ItemStatus(enum.Enum):
    OK = "ok"
    ERROR = "error"


@dataclass
class BatchItem:
    """One input file's outcome, as it appears in ``summary.json``."""

    file: str
    status: ItemStatus
    output: str | None = None
    error: str | None = None
    skipped: bool = False
    audio_ms: float = 0.0
    elapsed_ms: float = 0.0
    retries: int = 0  # times a lost worker made the file start over (Ray backend)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


@dataclass
class BatchSummary:
    items: list[BatchItem] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def failed(self) -> list[BatchItem]:
        return [i for i in self.items if i.status is ItemStatus.ERROR]

    @property
    def retries(self) -> int:
        return sum(i.retries for i in self.items)

    @property
    def real_time_factor(self) -> float | None:
        """Processing time over audio time for the files processed in this run."""
        done = [i for i in self.items if i.status is ItemStatus.OK and not i.skipped]
        audio = sum(i.audio_ms for i in done)
        return sum(i.elapsed_ms for i in done) / audio if audio else None


def list_inputs(source: Path) -> list[Path]:
    """The recordings ``source`` names: a folder, a glob, or a manifest file.

    A folder: every visible entry but plain subfolders; nothing is hidden
    (non-audio files, FIFOs, broken or looping symlinks and directories named
    like audio are listed so their rows say what they are). A glob
    (``calls/2026-*/*.wav``, ``**`` for any depth): its matches, the same way. A
    manifest (any other file): one path or ``file://`` URI per line, read a line
    at a time, relative paths from the manifest's folder, blank lines and
    ``#`` comments skipped, each file once, in the manifest's order; so a
    million-file job never lists a directory in one go.
    """
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if _listed(p))
    elif source.is_file() and source.suffix.lower() in SUPPORTED:
        raise ConfigError(
            f"{source}: a recording, not a list of them",
            hint="pass its folder, a glob, or a manifest file of one path per line",
        )
    elif source.is_file():
        files = _read_manifest(source)
    elif _GLOB_CHARS & set(str(source)):
        files = sorted(Path(p) for p in glob.iglob(str(source), recursive=True) if _listed(Path(p)))
        if not files:
            raise ConfigError(f"{source}: matches no files", hint="check the pattern")
    else:
        raise ConfigError(
            f"{source}: not a directory",
            hint="pass the folder of recordings, a glob of them or a manifest file",
        )
    if not files:
        raise ConfigError(f"{source}: holds no files", hint="put WAV or FLAC recordings in it")
    return files


_GLOB_CHARS = set("*?[")


def _listed(path: Path) -> bool:
    return not path.name.startswith(".") and not _plain_subfolder(path)


def _read_manifest(manifest: Path) -> list[Path]:
    seen: dict[Path, None] = {}  # ordered, each file once
    try:
        with manifest.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                seen.setdefault(manifest.parent / _manifest_path(manifest, number, entry))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{manifest}: not a manifest (not UTF-8 text: {exc.reason})",
            hint="pass a folder, a glob, or a text file of one path per line",
        ) from exc
    return list(seen)


def _manifest_path(manifest: Path, number: int, entry: str) -> Path:
    if "://" not in entry:
        return Path(entry)
    uri = urllib.parse.urlsplit(entry)
    if uri.scheme != "file" or uri.netloc not in ("", "localhost"):
        raise ConfigError(
            f"{manifest}:{number}: {entry!r}: only paths and file:// URIs can be read",
            hint="copy the recordings to this machine and list their paths",
        )
    return Path(urllib.parse.unquote(uri.path))


def _plain_subfolder(path: Path) -> bool:
    try:
        return path.is_dir() and path.suffix.lower() not in SUPPORTED
    except OSError:  # a symlink loop: listed, and its row says so
        return False


def output_keys(files: list[Path]) -> dict[Path, str]:
    """``<stem>`` per file, or the full name where two files share a stem."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    return {f: f.stem if stems[f.stem] == 1 else f.name for f in files}


def prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".voxpipe-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: cannot write results there ({exc.strerror})",
            hint="choose a writable output directory",
        ) from exc


def _write_json(path: Path, data: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)


def already_done(out_dir: Path, key: str) -> bool:
    result = out_dir / f"{key}.json"
    if not result.is_file() or not (out_dir / f"{key}.reply.wav").is_file():
        return False
    try:
        return "reply" in json.loads(result.read_text())
    except (json.JSONDecodeError, OSError):
        return False


# One seed for every reply of a batch: a file gets the same answer on either backend and
# on a re-run with --force, whichever process or worker answers it.
BATCH_SEED = 1234
# Row errors that are the file's fault (expected); anything else is logged as a bug too.
_FILE_ERRORS = (AudioFormatError, OSError, ValueError, RuntimeError)


@dataclass(frozen=True)
class Job:
    """One recording, decoded by the driver, as a backend receives it.

    ``label`` is the driver's path, so every error names the file as the driver
    knows it, wherever the work ran.
    """

    name: str
    label: str
    pcm16: bytes  # 16 kHz mono
    audio_ms: float
    instructions: str


@dataclass(frozen=True)
class Answer:
    """What a backend computed for a job: the driver writes it."""

    transcript: str
    reply: str
    timings: dict[str, float]
    speech_ms: float
    reply_pcm: bytes
    reply_rate: int


@dataclass(frozen=True)
class Failed:
    """The file's own fault (or a bug on its path): its row's error, never retried."""

    error: str


Outcome = Answer | Failed


@dataclass(frozen=True)
class Delivered:
    """A backend's outcome for one job and how many times a lost worker made it start over."""

    outcome: Outcome
    retries: int = 0


class BatchBackend(Protocol):
    """Where the models run: in this process (asyncio) or on a Ray cluster.

    The driver (:func:`run_batch`) lists, skips, decodes and writes; a backend
    only turns a :class:`Job` into an :class:`Outcome`, so both backends write
    the same files the same way.
    """

    @property
    def slots(self) -> int:
        """How many files the driver keeps in flight."""
        ...

    async def start(self) -> None: ...

    async def answer(self, job: Job) -> Delivered: ...

    async def close(self) -> None: ...


def file_error(name: str, exc: BaseException) -> Failed:
    """A row's error for what a file raised; an unexpected kind is logged with its traceback."""
    if isinstance(exc, _FILE_ERRORS):
        return Failed(str(exc))
    logger.opt(exception=exc).error("batch: {} failed unexpectedly", name)
    return Failed(f"unexpected {type(exc).__name__}: {exc}")


async def answer_job(engines: LocalEngines, job: Job) -> Outcome:
    """The models' part of one file, the same on every backend; never raises for the file."""
    try:
        voiced = await asyncio.to_thread(speech_ms, job.pcm16)
        if voiced < MIN_SPEECH_MS:
            raise AudioFormatError(f"{job.label}: holds no speech (silence or noise only)")
        turn = await run_turn(engines, job.pcm16, instructions=job.instructions)
        if not turn.transcript:
            raise AudioFormatError(f"{job.label}: no words could be transcribed")
    except Exception as exc:
        return file_error(job.name, exc)
    return Answer(
        turn.transcript, turn.reply, turn.timings, voiced, turn.reply_pcm, turn.reply_rate
    )


async def batch_engines(threads: int = 2) -> LocalEngines:
    """The engines a batch answers with: the process's shared STT and TTS, a seeded LLM."""
    stt, voice = await asyncio.gather(shared_stt(), shared_tts())
    llm = await shared_model(
        ("llm", "batch", str(threads)), lambda: LlamaEngine(n_threads=threads, seed=BATCH_SEED)
    )
    return LocalEngines(stt=stt, llm=llm, tts=voice)


class AsyncioBackend:
    """The default: the engines in this process, ``workers`` files in flight at once."""

    def __init__(self, workers: int = 1, engines: LocalEngines | None = None) -> None:
        self._workers = workers
        self._engines = engines

    @property
    def slots(self) -> int:
        return self._workers

    async def start(self) -> None:
        if self._engines is None:
            self._engines = await batch_engines()

    async def answer(self, job: Job) -> Delivered:
        assert self._engines is not None, "start() first"
        return Delivered(await answer_job(self._engines, job))

    async def close(self) -> None:
        return None


def write_answer(out_dir: Path, key: str, job: Job, answer: Answer) -> None:
    """The reply's audio, then its result (the result's presence means done), each atomic."""
    wav = out_dir / f"{key}.reply.wav"
    write_wav(wav, answer.reply_pcm, answer.reply_rate)
    result = {
        "file": job.name,
        "transcript": answer.transcript,
        "reply": answer.reply,
        "timings": {**answer.timings, "audio_ms": round(job.audio_ms, 1)},
        "speech_ms": answer.speech_ms,
        "reply_wav": wav.name,
    }
    _write_json(out_dir / f"{key}.json", result)


async def run_batch(
    source: Path,
    out_dir: Path,
    *,
    instructions: str = DEFAULT_INSTRUCTIONS,
    workers: int = 1,
    force: bool = False,
    max_audio_secs: float | None = DEFAULT_MAX_AUDIO_SECS,
    engines: LocalEngines | None = None,
    backend: BatchBackend | None = None,
    on_item: Callable[[BatchItem], None] | None = None,
) -> BatchSummary:
    """Answer every recording ``source`` names (:func:`list_inputs`) into ``out_dir``.

    ``backend`` None answers in this process (``workers`` files at once, on
    ``engines`` or the batch's own). ``max_audio_secs`` None takes recordings
    of any length. Each finished row is appended to ``summary.jsonl`` at once;
    ``summary.json`` comes at the end.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if max_audio_secs is not None and not max_audio_secs > 0:
        raise ConfigError(f"--max-audio-secs must be above 0, not {max_audio_secs}")
    files = list_inputs(source)
    prepare_out_dir(out_dir)
    keys = output_keys(files)
    backend = backend or AsyncioBackend(workers, engines)
    start = time.perf_counter()
    rows: dict[Path, BatchItem] = {}
    pending = iter(files)  # shared: each slot takes the next file when it is free

    async def one(path: Path) -> BatchItem:
        key = keys[path]
        if not force and already_done(out_dir, key):
            return BatchItem(path.name, ItemStatus.OK, f"{key}.json", skipped=True)
        began = time.perf_counter()
        try:
            audio = await asyncio.to_thread(load_audio, path, 16_000, max_secs=max_audio_secs)
        except Exception as exc:
            return _error_row(path.name, file_error(path.name, exc))
        job = Job(path.name, str(path), audio.pcm16, audio.duration_ms, instructions)
        delivered = await backend.answer(job)
        if isinstance(delivered.outcome, Failed):
            return _error_row(path.name, delivered.outcome, delivered.retries)
        try:
            await asyncio.to_thread(write_answer, out_dir, key, job, delivered.outcome)
        except Exception as exc:
            return _error_row(path.name, file_error(path.name, exc), delivered.retries)
        elapsed = (time.perf_counter() - began) * 1000
        return BatchItem(
            path.name,
            ItemStatus.OK,
            f"{key}.json",
            audio_ms=audio.duration_ms,
            elapsed_ms=elapsed,
            retries=delivered.retries,
        )

    with (out_dir / "summary.jsonl").open("w") as stream:

        async def slot() -> None:
            for path in pending:
                item = await one(path)
                rows[path] = item
                stream.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
                stream.flush()
                if on_item is not None:
                    on_item(item)

        await backend.start()
        slots = [asyncio.create_task(slot()) for _ in range(backend.slots)]
        try:
            await asyncio.gather(*slots)
        finally:  # stopped or failed: no slot goes on writing behind the caller's back
            for task in slots:
                task.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            await backend.close()
    summary = BatchSummary([rows[f] for f in files], (time.perf_counter() - start) * 1000)
    _write_json(
        out_dir / "summary.json",
        {
            "files": [i.to_json() for i in summary.items],
            "ok": len(summary.items) - len(summary.failed),
            "failed": len(summary.failed),
            "retries": summary.retries,
            "elapsed_ms": round(summary.elapsed_ms, 1),
            "real_time_factor": summary.real_time_factor,
        },
    )
    return summary


def _error_row(name: str, failed: Failed, retries: int = 0) -> BatchItem:
    return BatchItem(name, ItemStatus.ERROR, error=failed.error, retries=retries)
