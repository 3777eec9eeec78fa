"""Regenerate voxpipe/data/demo_caller.wav and its script with the local Piper voice.

The demo's caller is synthetic speech so it can ship in the repository: run
this after changing the lines below, and commit both files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxpipe.engines import PiperEngine

RATE = 16_000
# (text, silence after it in ms). The gaps leave the bot time to answer; the
# second gap is short on purpose: the caller talks over the bot's answer.
LINES = [
    ("Hi, what time does the pharmacy open on Saturday?", 7_000),
    ("And what is the weather like in Paris today?", 2_600),
    ("Sorry, one more thing. Can I pay by card?", 7_000),
]


def main() -> None:
    voice = PiperEngine()
    parts = [np.zeros(RATE // 2, dtype=np.float32)]
    cursor_ms = 500.0
    script = []
    for text, gap_ms in LINES:
        pcm = b"".join(voice.synthesize(text))
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        audio = soxr.resample(audio, voice.sample_rate, RATE)
        start = cursor_ms
        cursor_ms += len(audio) / RATE * 1000
        script.append({"text": text, "start_ms": round(start), "end_ms": round(cursor_ms)})
        parts += [audio, np.zeros(RATE * gap_ms // 1000, dtype=np.float32)]
        cursor_ms += gap_ms
    out = Path(__file__).resolve().parent.parent / "voxpipe" / "data"
    sf.write(str(out / "demo_caller.wav"), np.concatenate(parts), RATE, subtype="PCM_16")
    (out / "demo_caller.json").write_text(json.dumps(script, indent=2) + "\n")


if __name__ == "__main__":
    main()
