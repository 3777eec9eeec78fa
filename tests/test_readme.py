"""The README's Python example runs exactly as written, so README and code cannot drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    """The first ``python`` code block of the README's "## Python" section."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Python section has no python code block"
    return match.group(1)


def test_the_example_is_a_whole_program() -> None:
    code = python_example()
    compile(code, "README.md", "exec")
    assert "asyncio.run(main())" in code and "run_until_input_ends()" in code


@pytest.mark.models
def test_the_python_example_runs_a_call_and_writes_it(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(python_example())
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data, rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
    assert data.shape[1] == 2
    assert len(data) / rate >= 25  # the whole 25 s recording was played
    assert np.abs(data[:, 1]).max() > 3000  # the bot answered aloud
    assert "'role': 'user'" in done.stdout and "'role': 'assistant'" in done.stdout
