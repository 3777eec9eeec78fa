"""``voxpipe batch IN OUT_DIR``: answer recordings on the chained path.

IN is a folder, a glob (quoted) or a manifest file of one path per line.

``--backend ray`` runs the models on a Ray cluster's actors (the ``ray`` extra);
the outputs are the same files either way.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import sys
from pathlib import Path
from typing import Any

from voxpipe.cli import summary


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help=summary("batch"),
        description="For each recording in IN (a folder, a quoted glob, or a manifest file "
        "of one path or file:// URI per line) write OUT_DIR/<stem>.json and "
        "<stem>.reply.wav, a row of OUT_DIR/summary.jsonl as each finishes, then "
        "OUT_DIR/summary.json. Exit code 1 if any file failed.",
    )
    parser.add_argument("source", type=Path, metavar="IN")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--instructions", default=None, help="system prompt for the replies")
    parser.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=Backend.ASYNCIO.value,
        help="asyncio: the models in this process (default); ray: on a Ray cluster's actors",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="asyncio: files in flight at once (default 1); ray: actors (default: the "
        "cluster's CPUs / --cpus-per-worker)",
    )
    parser.add_argument(
        "--address",
        default="local",
        help="ray: local (start Ray here, the default), auto (this machine's cluster) "
        "or a cluster address",
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=int,
        default=1,
        help="ray: CPUs per actor; its Whisper and llama.cpp threads (default 1)",
    )
    parser.add_argument("--force", action="store_true", help="redo files already answered")
    parser.add_argument(
        "--max-audio-secs",
        type=float,
        default=600.0,
        help="refuse recordings longer than this, from their header (default 600; 0: no limit)",
    )
    parser.set_defaults(func=run)


class Backend(enum.Enum):
    ASYNCIO = "asyncio"
    RAY = "ray"


def run(args: argparse.Namespace) -> int:
    from voxpipe.pipelines.batch import BatchBackend, BatchItem, ItemStatus, list_inputs, run_batch
    from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS

    backend: BatchBackend | None = None
    if Backend(args.backend) is Backend.RAY:
        # Before anything is listed or written: without Ray this is a ConfigError naming the extra.
        from voxpipe.pipelines.batch_ray import RayBackend

        backend = RayBackend(
            address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker
        )
    total = len(list_inputs(args.source))
    with _progress(total) as advance:

        def on_item(item: BatchItem) -> None:
            advance(item.file)
            if item.status is ItemStatus.ERROR:
                print(f"error: {item.error}", file=sys.stderr)

        summary = asyncio.run(
            run_batch(
                args.source,
                args.out_dir,
                instructions=args.instructions or DEFAULT_INSTRUCTIONS,
                workers=args.workers or 1,
                backend=backend,
                force=args.force,
                max_audio_secs=args.max_audio_secs or None,
                on_item=on_item,
            )
        )
    done = len(summary.items) - len(summary.failed)
    rtf = summary.real_time_factor
    rtf_text = f", real-time factor {rtf:.2f}" if rtf is not None else ""
    retries = f", {summary.retries} retried after a lost worker" if summary.retries else ""
    print(
        f"{done} ok, {len(summary.failed)} failed{retries}{rtf_text} "
        f"-> {args.out_dir / 'summary.json'}"
    )
    return 1 if summary.failed else 0


class _progress:
    """A rich progress bar on a terminal; nothing on a pipe."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda _name: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        task = self._bar.add_task("answering", total=self._total, rate="")

        def advance(name: str) -> None:
            self._bar.update(task, advance=1, description=name)
            speed = self._bar.tasks[task].speed
            if speed is not None:
                self._bar.update(task, rate=f"{speed:.2f} files/s")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
