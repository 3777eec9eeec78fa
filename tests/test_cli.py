"""The ``voxpipe`` command itself: its help and its log levels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxpipe.cli import COMMANDS


def _voxpipe(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxpipe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_says_in_one_line_what_each_command_does_without_importing_them() -> None:
    probe = (
        "import sys\n"
        "from voxpipe.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('loaded:', sorted(m for m in sys.modules if m.startswith('voxpipe.cli.')))\n"
        "print('pipecat' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    listing = " ".join(done.stdout.split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.summary}" in listing, name
    assert "--help'" not in done.stdout  # no "run 'voxpipe X --help'" placeholders
    assert "-v, --verbose" in done.stdout and "VOXPIPE_LOG_LEVEL" in done.stdout
    assert lines[-2] == "loaded: []" and lines[-1] == "False"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_registers_itself_with_its_summary(name: str) -> None:
    from voxpipe.cli import build_parser

    listing = " ".join(build_parser([name]).format_help().split())  # unwrapped
    assert COMMANDS[name].summary in listing


# Runs a cheap command through main(), then logs as pipecat and as voxpipe would.
PROBE = """
import sys
from loguru import logger
from voxpipe.cli import main
code = main(sys.argv[1:])
logger.patch(lambda r: r.update(name="pipecat.processors.frame_processor")).debug("PIPECAT-DEBUG")
logger.patch(lambda r: r.update(name="voxpipe.pipelines.session")).info("VOXPIPE-INFO")
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("args", "level", "pipecat_debug", "voxpipe_info"),
    [
        (["cost", "--minutes", "1"], None, False, True),
        (["-v", "cost", "--minutes", "1"], None, True, True),
        (["cost", "--minutes", "1", "--verbose"], None, True, True),
        (["cost", "--minutes", "1"], "DEBUG", True, True),
        (["cost", "--minutes", "1"], "WARNING", False, False),
    ],
)
def test_verbose_and_the_environment_choose_the_log_level(
    args: list[str], level: str | None, pipecat_debug: bool, voxpipe_info: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOXPIPE_LOG_LEVEL"}
    if level is not None:
        env["VOXPIPE_LOG_LEVEL"] = level
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert ("PIPECAT-DEBUG" in done.stderr) is pipecat_debug
    assert ("VOXPIPE-INFO" in done.stderr) is voxpipe_info


def test_a_bad_log_level_is_refused_by_name() -> None:
    done = _voxpipe("cost", "--minutes", "1", env={"VOXPIPE_LOG_LEVEL": "LOUD"})
    assert done.returncode == 2
    assert "VOXPIPE_LOG_LEVEL='LOUD' is not a log level" in done.stderr


def test_an_unknown_option_is_still_an_error() -> None:
    done = _voxpipe("cost", "--minutes", "1", "--loud")
    assert done.returncode == 2
    assert "unrecognized arguments: --loud" in done.stderr


@pytest.mark.models
def test_the_demo_prints_no_pipecat_debug_lines_by_default(tmp_path: Path) -> None:
    env = {"VOXPIPE_LOG_LEVEL": ""}
    done = _voxpipe("demo", "--out", str(tmp_path / "demo"), env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "The call, turn by turn" in done.stdout
    assert "| DEBUG" not in done.stderr
    pipecat_lines = [line for line in done.stderr.splitlines() if "| pipecat" in line]
    assert not [line for line in pipecat_lines if "| WARNING" not in line], pipecat_lines
    assert (tmp_path / "demo" / "call.wav").exists()
