"""Real engines that log, to a file every Ray worker process appends to, what they did.

The tests read the log to count engine loads per process and transcriptions per
recording (a recording is named by a hash of its audio). Optionally the first
transcription in the whole test kills its process, as a worker lost mid-file;
or a transcription on one Ray node holds its file until the test removes the node.
Shipped to the actors by value (see conftest), so the workers need not import tests/.
"""

from __future__ import annotations

import hashlib
import os
import time
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
    hold_on_node: str | None = None  # a Ray node id: a transcription there never finishes
    held: Path | None = None  # written ("pid audio-id") when a file is held on that node

    def __call__(self, threads: int) -> LocalEngines:
        engines = real_engines(threads)
        _append(self.log, f"load {os.getpid()} {threads}")
        stt: Any = _CountingSTT(engines.stt, self, _holds(self.hold_on_node))
        return LocalEngines(stt=stt, llm=engines.llm, tts=engines.tts)


def _holds(node_id: str | None) -> bool:
    """Whether this process runs on the Ray node whose files are held."""
    if node_id is None:
        return False
    import ray

    return bool(ray.get_runtime_context().get_node_id() == node_id)


# A held file waits for its node's removal; this bounds it should the test die first.
HOLD_LIMIT_S = 900.0


class _CountingSTT:
    def __init__(self, inner: Any, spec: CountingEngines, holds: bool) -> None:
        self._inner = inner
        self._spec = spec
        self._holds = holds

    def transcribe(self, pcm16: bytes, sample_rate: int = 16_000) -> str:
        _append(self._spec.log, f"stt {os.getpid()} {audio_id(pcm16)}")
        marker = self._spec.die_once
        if marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process is lost mid-file, as a crash or an OOM kill
        if self._holds and self._spec.held is not None:
            partial = self._spec.held.with_name(self._spec.held.name + ".partial")
            partial.write_text(f"{os.getpid()} {audio_id(pcm16)}")
            partial.replace(self._spec.held)  # whole, or not there
            time.sleep(HOLD_LIMIT_S)  # the node's removal ends this process
            os._exit(1)
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
