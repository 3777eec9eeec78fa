"""The chained fallback as a batch job: a folder of recordings in, answers out.

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
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from voxpipe.engines import LocalEngines, shared_engines
from voxpipe.engines.reply import run_turn
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
    def real_time_factor(self) -> float | None:
        """Processing time over audio time for the files processed in this run."""
        done = [i for i in self.items if i.status is ItemStatus.OK and not i.skipped]
        audio = sum(i.audio_ms for i in done)
        return sum(i.elapsed_ms for i in done) / audio if audio else None


def list_inputs(in_dir: Path) -> list[Path]:
    """Every visible entry of ``in_dir`` but plain subfolders; nothing is hidden.

    Non-audio files, FIFOs, broken or looping symlinks and directories named
    like audio are listed so their rows say what they are.
    """
    if not in_dir.is_dir():
        raise ConfigError(f"{in_dir}: not a directory", hint="pass the folder of recordings")
    files = sorted(
        p for p in in_dir.iterdir() if not p.name.startswith(".") and not _plain_subfolder(p)
    )
    if not files:
        raise ConfigError(f"{in_dir}: holds no files", hint="put WAV or FLAC recordings in it")
    return files


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


async def answer_file(
    engines: LocalEngines,
    path: Path,
    out_dir: Path,
    key: str,
    instructions: str,
    max_audio_secs: float | None = DEFAULT_MAX_AUDIO_SECS,
) -> BatchItem:
    start = time.perf_counter()
    audio = await asyncio.to_thread(load_audio, path, 16_000, max_secs=max_audio_secs)
    voiced = await asyncio.to_thread(speech_ms, audio.pcm16)
    if voiced < MIN_SPEECH_MS:
        raise AudioFormatError(f"{path}: holds no speech (silence or noise only)")
    turn = await run_turn(engines, audio.pcm16, instructions=instructions)
    if not turn.transcript:
        raise AudioFormatError(f"{path}: no words could be transcribed")
    write_wav(out_dir / f"{key}.reply.wav", turn.reply_pcm, turn.reply_rate)
    elapsed = (time.perf_counter() - start) * 1000
    result = {
        "file": path.name,
        "transcript": turn.transcript,
        "reply": turn.reply,
        "timings": {**turn.timings, "audio_ms": round(audio.duration_ms, 1)},
        "speech_ms": voiced,
        "reply_wav": f"{key}.reply.wav",
    }
    _write_json(out_dir / f"{key}.json", result)
    return BatchItem(
        path.name, ItemStatus.OK, f"{key}.json", audio_ms=audio.duration_ms, elapsed_ms=elapsed
    )


async def run_batch(
    in_dir: Path,
    out_dir: Path,
    *,
    instructions: str = DEFAULT_INSTRUCTIONS,
    workers: int = 1,
    force: bool = False,
    max_audio_secs: float | None = DEFAULT_MAX_AUDIO_SECS,
    engines: LocalEngines | None = None,
    on_item: Callable[[BatchItem], None] | None = None,
) -> BatchSummary:
    """Answer every recording in ``in_dir`` into ``out_dir``; see the module docstring.

    ``max_audio_secs`` None takes recordings of any length.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if max_audio_secs is not None and not max_audio_secs > 0:
        raise ConfigError(f"--max-audio-secs must be above 0, not {max_audio_secs}")
    files = list_inputs(in_dir)
    prepare_out_dir(out_dir)
    keys = output_keys(files)
    engines = engines or await shared_engines()
    gate = asyncio.Semaphore(workers)
    start = time.perf_counter()

    async def one(path: Path) -> BatchItem:
        key = keys[path]
        if not force and already_done(out_dir, key):
            item = BatchItem(path.name, ItemStatus.OK, f"{key}.json", skipped=True)
        else:
            async with gate:
                try:
                    item = await answer_file(
                        engines, path, out_dir, key, instructions, max_audio_secs
                    )
                except (AudioFormatError, OSError, ValueError, RuntimeError) as exc:
                    item = BatchItem(path.name, ItemStatus.ERROR, error=str(exc))
                except Exception as exc:  # one file's bug must not cost the run its summary
                    logger.opt(exception=exc).error("batch: {} failed unexpectedly", path.name)
                    error = f"unexpected {type(exc).__name__}: {exc}"
                    item = BatchItem(path.name, ItemStatus.ERROR, error=error)
        if on_item is not None:
            on_item(item)
        return item

    items = await asyncio.gather(*(one(f) for f in files))
    summary = BatchSummary(list(items), (time.perf_counter() - start) * 1000)
    _write_json(
        out_dir / "summary.json",
        {
            "files": [i.to_json() for i in summary.items],
            "ok": len(summary.items) - len(summary.failed),
            "failed": len(summary.failed),
            "elapsed_ms": round(summary.elapsed_ms, 1),
            "real_time_factor": summary.real_time_factor,
        },
    )
    return summary
