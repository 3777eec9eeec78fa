"""``voxpipe batch`` on folders that hold more than recordings: every entry gets a row.

None of these files reaches a model, so the engines are never loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import voxpipe.pipelines.batch as batch
from voxpipe.errors import ConfigError
from voxpipe.pipelines.batch import ItemStatus, run_batch


class Unused:
    """Engines no row here may touch."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a model was used ({name})")


def _rows(out: Path) -> dict[str, str | None]:
    summary = json.loads((out / "summary.json").read_text())
    return {row["file"]: row["error"] for row in summary["files"]}


def test_odd_entries_are_rows_that_say_what_they_are(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    os.mkfifo(inbox / "pipe.wav")  # opening it would block for ever
    (inbox / "loop.wav").symlink_to(inbox / "loop.wav")
    (inbox / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (inbox / "folder.wav").mkdir()
    (inbox / "archive").mkdir()  # a plain subfolder: passed over
    sf.write(str(inbox / "long.wav"), np.zeros(8_000 * 40, dtype="float32"), 8_000)

    out = tmp_path / "out"
    summary = asyncio.run(run_batch(inbox, out, engines=Unused(), max_audio_secs=30))  # type: ignore[arg-type]

    assert {i.status for i in summary.items} == {ItemStatus.ERROR}
    rows = _rows(out)
    assert set(rows) == {"pipe.wav", "loop.wav", "gone.wav", "folder.wav", "long.wav"}
    assert "not a regular file (a FIFO)" in str(rows["pipe.wav"])
    assert "symbolic links" in str(rows["loop.wav"])  # ELOOP's own words
    assert "a broken symlink" in str(rows["gone.wav"])
    assert "not a regular file (a directory)" in str(rows["folder.wav"])
    assert "40 s of audio; the limit is 30 s" in str(rows["long.wav"])


def test_a_file_that_raises_anything_costs_its_row_not_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(str(inbox / name), np.zeros(16_000, dtype="float32"), 16_000)

    def broken(pcm16: bytes) -> int:
        raise KeyError("a bug in one file's path")

    monkeypatch.setattr(batch, "speech_ms", broken)
    out = tmp_path / "out"
    summary = asyncio.run(run_batch(inbox, out, engines=Unused()))  # type: ignore[arg-type]

    assert len(summary.failed) == 2
    rows = _rows(out)
    assert rows["a.wav"] == 'unexpected KeyError: "a bug in one file\'s path"'
    assert rows["b.wav"] == rows["a.wav"]


def test_no_length_limit_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros(8_000 * 40, dtype="float32"), 8_000)
    from voxpipe.transports.audio_file import load_audio

    assert load_audio(path, 8_000).duration_ms == pytest.approx(40_000)
    assert load_audio(path, 8_000, max_secs=40.5).duration_ms == pytest.approx(40_000)


@pytest.mark.parametrize("limit", [0.0, -5.0, float("nan")])
def test_a_nonsense_limit_is_a_config_error(tmp_path: Path, limit: float) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.wav").write_bytes(b"x")
    with pytest.raises(ConfigError, match="max-audio-secs"):
        asyncio.run(run_batch(inbox, tmp_path / "out", engines=Unused(), max_audio_secs=limit))  # type: ignore[arg-type]


def test_a_manifest_or_a_glob_names_the_recordings(tmp_path: Path) -> None:
    """A path or file:// URI a line (relative to the manifest), or a glob: rows as a folder's."""
    calls = tmp_path / "calls"
    (calls / "mon").mkdir(parents=True)
    (calls / "tue").mkdir()
    for name in ("mon/a.wav", "mon/b.wav", "tue/c.wav"):
        (calls / name).write_bytes(b"")  # empty: an error row, no model needed
    manifest = tmp_path / "jobs.txt"
    manifest.write_text(
        "# today's calls\n"
        "calls/tue/c.wav\n"
        "\n"
        f"file://{calls / 'mon/a.wav'}\n"
        "calls/tue/c.wav\n"  # listed twice, answered once
        "calls/mon/missing.wav\n"
    )
    assert batch.list_inputs(manifest) == [
        calls / "tue/c.wav",
        calls / "mon/a.wav",
        calls / "mon/missing.wav",
    ]
    assert batch.list_inputs(Path(f"{calls}/*/*.wav")) == [
        calls / "mon/a.wav",
        calls / "mon/b.wav",
        calls / "tue/c.wav",
    ]
    assert batch.list_inputs(Path(f"{calls}/**/b.wav")) == [calls / "mon/b.wav"]

    out = tmp_path / "out"
    asyncio.run(run_batch(manifest, out, engines=Unused()))  # type: ignore[arg-type]
    rows = _rows(out)
    assert set(rows) == {"c.wav", "a.wav", "missing.wav"}
    assert "empty" in str(rows["c.wav"]) and "missing.wav" in str(rows["missing.wav"])
    streamed = [
        json.loads(line)["file"] for line in (out / "summary.jsonl").read_text().splitlines()
    ]
    assert sorted(streamed) == sorted(rows)  # each row as it finished


def test_a_manifest_or_glob_that_cannot_work_is_a_config_error(tmp_path: Path) -> None:
    remote = tmp_path / "remote.txt"
    remote.write_text("a.wav\ns3://bucket/b.wav\n")
    with pytest.raises(ConfigError, match=r"remote.txt:2: 's3://bucket/b.wav': only paths"):
        batch.list_inputs(remote)
    with pytest.raises(ConfigError, match="matches no files"):
        batch.list_inputs(tmp_path / "nothing" / "*.wav")
    binary = tmp_path / "calls.bin"
    binary.write_bytes(b"RIFF\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a manifest"):
        batch.list_inputs(binary)
    one = tmp_path / "a.wav"
    one.write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match="a recording, not a list of them"):
        batch.list_inputs(one)
