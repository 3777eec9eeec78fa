"""``voxpipe models prepare|check``: set up and verify the offline weights."""

from __future__ import annotations

import argparse
from typing import Any

from voxpipe import weights
from voxpipe.cli import summary
from voxpipe.errors import ModelMissingError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help=summary("models"))
    parser.add_argument("action", choices=["prepare", "check"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    llm = weights.llm_path(prepare=args.action == "prepare")
    rows = [
        ("whisper tiny.en", weights.whisper_dir()),
        ("qwen2.5-0.5b gguf", llm),
        ("espeak-ng", weights.espeak_paths()[0]),
    ]
    try:
        rows.append(("piper joe-medium", weights.piper_voice()[0]))
    except ModelMissingError as exc:
        print(f"piper (optional, GPL-3.0): not installed: {exc}")
    for name, path in rows:
        print(f"{name:<20} {path}")
    return 0
