"""``voxpipe batch`` at scale: the asyncio backend against Ray with 1 and 2 workers.

One run, one machine, the same recordings (the local voice speaking
``QUESTIONS``) through three set-ups:

- asyncio: the default backend, the engines in this process (2 threads each);
- ray 1x2: one Ray actor holding 2 CPUs (its Whisper and llama.cpp on 2 threads);
- ray 2x1: two actors of 1 CPU each (1 thread each), two files in flight.

Every set-up is started once (its start-up timed: Ray's own start, then the
actors loading their engines), answers one warm-up file, then the rounds
alternate between set-ups so a change in the machine's load falls on all of
them. Per round and set-up: files/s (files over the run's wall time), the
per-file real-time factor (the summary's: processing time over audio time)
and the driver's CPU per file (what bounds one driver whatever the cluster).
Medians over rounds; files/s as a ratio to the asyncio backend's.

Ray is started with 4 logical CPUs so both pools stay up between rounds (only
one runs at a time; each is pinned to the threads it declares).

    python benchmarks/batch_scale.py [--files 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import QUESTIONS, median, print_table, speak, write_result

from voxpipe.engines import make_tts
from voxpipe.pipelines.batch import AsyncioBackend, BatchBackend, Delivered, Job, run_batch
from voxpipe.pipelines.batch_ray import LOCAL_SYSTEM_CONFIG, RayBackend, load_engines


class KeptUp:
    """A started backend lent to several runs: run_batch's start and close leave it up."""

    def __init__(self, inner: BatchBackend) -> None:
        self.inner = inner

    @property
    def slots(self) -> int:
        return self.inner.slots

    async def start(self) -> None:
        return None

    async def answer(self, job: Job) -> Delivered:
        return await self.inner.answer(job)

    async def close(self) -> None:
        return None


@dataclass
class SetUp:
    name: str
    backend: BatchBackend
    start_s: float
    runs: list[dict[str, float]]


def write_clips(folder: Path, count: int) -> float:
    """``count`` recordings in ``folder``; returns their total audio seconds."""
    voice = make_tts()
    folder.mkdir(parents=True)
    total = 0.0
    for i in range(count):
        pcm = np.frombuffer(speak(voice, QUESTIONS[i % len(QUESTIONS)]), dtype="<i2")
        pcm = np.concatenate([np.zeros(4_800, "<i2"), pcm, np.zeros(4_800, "<i2")])
        sf.write(str(folder / f"q{i:03d}.wav"), pcm, 16_000)
        total += len(pcm) / 16_000
    return total


async def one_run(setup: SetUp, inbox: Path, out: Path) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    summary = await run_batch(inbox, out, backend=KeptUp(setup.backend))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    files = len(summary.items)
    assert not summary.failed, [i.error for i in summary.failed]
    return {
        "wall_s": round(wall, 2),
        "files_per_s": round(files / wall, 4),
        "rtf": round(summary.real_time_factor or 0.0, 3),
        "driver_cpu_ms_per_file": round(cpu / files * 1000, 1),
        "load_1m": round(os.getloadavg()[0], 2),
    }


async def main(files: int, rounds: int) -> None:
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        audio_s = write_clips(root / "in", files)
        write_clips(root / "warm", 1)

        began = time.perf_counter()
        engines = await asyncio.to_thread(load_engines, 2)
        setups = [SetUp("asyncio", AsyncioBackend(1, engines), time.perf_counter() - began, [])]

        began = time.perf_counter()
        ray.init(
            address="local",  # its own Ray, not one already running here
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            _system_config=LOCAL_SYSTEM_CONFIG,  # as voxpipe batch --address local
        )
        ray_init_s = time.perf_counter() - began
        for name, workers, cpus in (("ray 1x2", 1, 2), ("ray 2x1", 2, 1)):
            backend = RayBackend(workers=workers, cpus_per_worker=cpus)
            began = time.perf_counter()
            await backend.start()
            setups.append(SetUp(name, backend, time.perf_counter() - began, []))

        loads = [round(os.getloadavg()[0], 2)]
        for setup in setups:  # first calls (model warm-up, KV cache) are not timed
            await run_batch(
                root / "warm", root / f"warm-{setup.name}", backend=KeptUp(setup.backend)
            )
        for r in range(rounds):
            order = setups if r % 2 == 0 else setups[::-1]
            for setup in order:
                out = root / f"out-{setup.name}-{r}"
                setup.runs.append(await one_run(setup, root / "in", out))
                loads.append(setup.runs[-1]["load_1m"])
        for setup in setups:
            await setup.backend.close()
        ray.shutdown()

    def med(setup: SetUp, key: str) -> float | None:
        return median([run[key] for run in setup.runs])

    def files_per_s(setup: SetUp) -> float:  # not _common.median: it rounds to 0.1
        return round(float(np.median([run["files_per_s"] for run in setup.runs])), 4)

    base = files_per_s(setups[0])
    rows = []
    report: dict[str, Any] = {}
    for setup in setups:
        fps = files_per_s(setup)
        ratio = round(fps / base, 2)
        report[setup.name] = {
            "start_s": round(setup.start_s, 2),
            "files_per_s_median": fps,
            "files_per_s_ratio_to_asyncio": ratio,
            "rtf_median": med(setup, "rtf"),
            "driver_cpu_ms_per_file_median": med(setup, "driver_cpu_ms_per_file"),
            "runs": setup.runs,
        }
        row = [setup.name, round(setup.start_s, 1), fps, ratio, med(setup, "rtf")]
        rows.append([*row, med(setup, "driver_cpu_ms_per_file")])
    print_table(
        f"voxpipe batch: {files} files ({audio_s:.1f} s of audio), median of {rounds} rounds; "
        f"Ray's own start {ray_init_s:.1f} s; load {min(loads)}-{max(loads)}",
        ["set-up", "start s", "files/s", "x asyncio", "RTF per file", "driver CPU ms/file"],
        rows,
    )
    path = write_result(
        "batch_scale",
        {
            "files": files,
            "audio_s": round(audio_s, 2),
            "rounds": rounds,
            "ray_init_s": round(ray_init_s, 2),
            "load_1m_range": [min(loads), max(loads)],
            "setups": report,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.files, args.rounds))
