"""Real engines that log, to a file every Ray worker process appends to, what they did.

The tests read the log to count engine loads per process and transcriptions per
recording (a recording is named by a hash of its audio). Optionally the first
transcription in the whole test kills its process, as a worker lost mid-file.
Shipped to the actors by value (see conftest), so the workers need not import tests/.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxpipe.engines import LocalEngines
from voxpipe.pipelines.batch_ray import load_engines as real_engines  # before a test patches it


def _append(log: Path, line: str) -> None:
    with log.open("a") as f:  # one short write per line: lines from processes do not mix
        f.write(line + "\n")


def audio_id(pcm16: bytes) -> str:
    return hashlib.sha1(pcm16).hexdigest()[:12]


@dataclass(frozen=True)
class CountingEngines:
    """An engines factory (``threads -> LocalEngines``) for the batch's backends."""

    log: Path
    die_once: Path | None = None  # absent: the next transcription creates it and dies

    def __call__(self, threads: int) -> LocalEngines:
        engines = real_engines(threads)
        _append(self.log, f"load {os.getpid()} {threads}")
        stt: Any = _CountingSTT(engines.stt, self)
        return LocalEngines(stt=stt, llm=engines.llm, tts=engines.tts)


class _CountingSTT:
    def __init__(self, inner: Any, spec: CountingEngines) -> None:
        self._inner = inner
        self._spec = spec

    def transcribe(self, pcm16: bytes, sample_rate: int = 16_000) -> str:
        _append(self._spec.log, f"stt {os.getpid()} {audio_id(pcm16)}")
        marker = self._spec.die_once
        if marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process is lost mid-file, as a crash or an OOM kill
        text: str = self._inner.transcribe(pcm16, sample_rate)
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class EngineLog:
    """The log, read back."""

    loads: list[tuple[int, int]]  # (pid, threads)
    transcriptions: list[tuple[int, str]]  # (pid, audio id)


def read_log(log: Path) -> EngineLog:
    loads: list[tuple[int, int]] = []
    stt: list[tuple[int, str]] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, pid, value = line.split()
        if kind == "load":
            loads.append((int(pid), int(value)))
        else:
            stt.append((int(pid), value))
    return EngineLog(loads, stt)
