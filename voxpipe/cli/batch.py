"""``voxpipe batch IN_DIR OUT_DIR``: answer a folder of recordings on the chained path."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from voxpipe.cli import summary


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help=summary("batch"),
        description="For each audio file in IN_DIR write OUT_DIR/<stem>.json and "
        "<stem>.reply.wav, then OUT_DIR/summary.json. Exit code 1 if any file failed.",
    )
    parser.add_argument("in_dir", type=Path, metavar="IN_DIR")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--instructions", default=None, help="system prompt for the replies")
    parser.add_argument("--workers", type=int, default=1, help="files in flight at once")
    parser.add_argument("--force", action="store_true", help="redo files already answered")
    parser.add_argument(
        "--max-audio-secs",
        type=float,
        default=600.0,
        help="refuse recordings longer than this, from their header (default 600; 0: no limit)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voxpipe.pipelines.batch import BatchItem, ItemStatus, list_inputs, run_batch
    from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS

    total = len(list_inputs(args.in_dir))
    with _progress(total) as advance:

        def on_item(item: BatchItem) -> None:
            advance(item.file)
            if item.status is ItemStatus.ERROR:
                print(f"error: {item.error}", file=sys.stderr)

        summary = asyncio.run(
            run_batch(
                args.in_dir,
                args.out_dir,
                instructions=args.instructions or DEFAULT_INSTRUCTIONS,
                workers=args.workers,
                force=args.force,
                max_audio_secs=args.max_audio_secs or None,
                on_item=on_item,
            )
        )
    done = len(summary.items) - len(summary.failed)
    rtf = summary.real_time_factor
    rtf_text = f", real-time factor {rtf:.2f}" if rtf is not None else ""
    print(f"{done} ok, {len(summary.failed)} failed{rtf_text} -> {args.out_dir / 'summary.json'}")
    return 1 if summary.failed else 0


class _progress:
    """A rich progress bar on a terminal; nothing on a pipe."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda _name: None
        from rich.progress import Progress

        self._bar = Progress(transient=False)
        self._bar.start()
        task = self._bar.add_task("answering", total=self._total)
        return lambda name: self._bar.update(task, advance=1, description=name)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
