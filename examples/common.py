"""What every example shares: its arguments, its outputs and its summary (not an example).

Each example takes an output directory (default: a new temporary one) and
``--input CALLER.wav``, the caller's recording (default: the demo caller that
ships with voxpipe, a 25 s pharmacy call with three questions). It writes
``call.wav`` (caller left, bot right) and ``transcript.json`` (the
conversation as the model saw it), and prints what was said.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

DEMO_CALLER = Path(str(files("voxpipe") / "data" / "demo_caller.wav"))


def parse_args(doc: str | None, configure: Any = None) -> argparse.Namespace:
    """``OUT_DIR`` and ``--input``; ``configure(parser)`` adds an example's own options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", nargs="?", type=Path, help="output directory (default: a temp dir)")
    parser.add_argument("--input", type=Path, default=DEMO_CALLER, help="the caller's recording")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="voxpipe-example-"))
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def save_call(out: Path, transport: Any, graph: Any) -> None:
    """Write call.wav and transcript.json, and print the call in a few lines."""
    transport.write_call_wav(out / "call.wav")
    messages = graph.context.get_messages()
    (out / "transcript.json").write_text(json.dumps(messages, indent=2, default=str) + "\n")
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role == "user" and content:
            print(f"caller: {content}")
        elif role == "assistant" and content:
            print(f"bot:    {content}")
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                function = call["function"]
                print(f"bot calls {function['name']}({function['arguments']})")
    spoken_s = transport.written.total_ms / 1000
    print(f"the bot spoke for {spoken_s:.1f} s; wrote {out / 'call.wav'} and transcript.json")
