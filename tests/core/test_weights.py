"""Missing weights are a clear error that says how to install them; the join is verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpipe import weights
from voxpipe.errors import ModelMissingError


def test_unjoined_llm_is_an_error_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXPIPE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelMissingError) as err:
        weights.llm_path()
    assert "make install" in str(err.value)
    assert str(tmp_path / "empty-cache") in str(err.value)


def test_join_writes_the_verified_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXPIPE_CACHE", str(tmp_path))
    path = weights.llm_path(prepare=True)
    assert path.is_file() and path.parent == tmp_path / "models"
    assert weights.llm_path() == path  # second call: no join
    assert not list(path.parent.glob("*.partial-*"))  # no half-written file left behind
