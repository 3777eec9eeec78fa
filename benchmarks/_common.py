"""Shared helpers for the benchmarks: generated speech, medians, the report table and JSON."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

RESULTS = Path(__file__).resolve().parent / "results"

QUESTIONS = [
    "What time does the pharmacy open on Saturday?",
    "What is the capital city of Japan?",
    "Can you tell me when my package will arrive?",
    "How many days are there in a leap year?",
    "Is the store open on public holidays?",
    "What is the weather usually like in London in spring?",
    "Could you explain how to reset my password?",
    "Which planet is closest to the sun?",
]


def speak(voice: Any, text: str, rate: int = 16_000) -> bytes:
    """PCM16 mono at ``rate`` of ``text`` spoken by a local voice."""
    pcm = b"".join(voice.synthesize(text))
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    audio = soxr.resample(audio, voice.sample_rate, rate)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


def machine() -> dict[str, Any]:
    import os

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_1m": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["-" if v is None else str(v) for v in row])
    Console().print(table)
