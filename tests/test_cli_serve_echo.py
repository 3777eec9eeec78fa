"""``voxpipe serve``'s echo guard flags: on by default, tunable, can be off; bad ones refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voxpipe.cli import build_parser
from voxpipe.cli.serve import echo_guard
from voxpipe.echo import EchoGuardConfig
from voxpipe.errors import ConfigError


def _guard(*flags: str) -> EchoGuardConfig | None:
    argv = ["serve", *flags]
    return echo_guard(build_parser(argv).parse_args(argv))


def test_the_echo_guard_is_on_by_default_and_can_be_tuned_or_turned_off() -> None:
    assert _guard() == EchoGuardConfig()
    assert _guard("--echo-margin-db", "10") == EchoGuardConfig(margin_db=10.0)
    assert _guard("--no-echo-guard") is None


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--echo-margin-db", "-3"], "0 to 40 dB"),
        (["--echo-margin-db", "90"], "0 to 40 dB"),
        (["--no-echo-guard", "--echo-margin-db", "6"], "turns it off"),
    ],
)
def test_bad_echo_flags_are_refused_with_a_clear_error(flags: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        _guard(*flags)


def test_the_command_refuses_them_before_it_serves_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxpipe", "serve", "--port", "1", "--echo-margin-db", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "voxpipe serve: error: --echo-margin-db must be 0 to 40 dB" in done.stderr
