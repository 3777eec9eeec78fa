"""What ``import voxpipe`` offers a pipeline author, and what it costs to import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import voxpipe
import voxpipe.errors


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )


def test_every_exported_name_resolves() -> None:
    for name in voxpipe.__all__:
        assert getattr(voxpipe, name) is not None, name
    assert sorted(voxpipe.__all__) == sorted(set(voxpipe.__all__))


def test_the_graph_builders_the_session_and_the_embedded_server_are_exported() -> None:
    wanted = {
        "build_chained_pipeline",
        "build_realtime_pipeline",
        "CallSession",
        "FileTransport",
        "TurnSettings",
        "VoiceGraph",
        "running_realtime_server",
        "ServerConfig",
        "GuardrailTap",
    }
    assert wanted <= set(voxpipe.__all__)
    assert "PlaybackClock" not in voxpipe.__all__
    assert voxpipe.CallSession.run_until_input_ends


def test_every_error_voxpipe_raises_is_exported() -> None:
    errors = {
        name
        for name, value in vars(voxpipe.errors).items()
        if inspect.isclass(value)
        and issubclass(value, voxpipe.errors.VoxpipeError)
        and not name.startswith("_")
    }
    assert errors <= set(voxpipe.__all__), errors - set(voxpipe.__all__)
    assert "Side" in voxpipe.__all__  # the attribute every error carries
    assert voxpipe.ConfigError is voxpipe.errors.ConfigError


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        voxpipe.PlaybackClock  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "PlaybackClock" in str(exc)
    else:
        raise AssertionError("voxpipe.PlaybackClock still resolves")


def test_importing_voxpipe_does_not_load_pipecat() -> None:
    done = _run(
        "import sys, voxpipe\n"
        "print(sorted(m for m in sys.modules if m == 'pipecat' or m.startswith('pipecat.')))"
    )
    assert done.stdout.strip() == "[]"


def test_voxpipe_cost_does_not_load_pipecat() -> None:
    done = _run(
        "import sys\n"
        "from voxpipe.cli import main\n"
        "assert main(['cost', '--minutes', '1']) == 0\n"
        "print('pipecat' in sys.modules)"
    )
    assert done.stdout.strip().endswith("False")
