"""The ``--judge module:factory`` plug-in: an LLM judge for ``eval:`` criteria.

voxpipe grades what it can deterministically; a criterion in words
(``eval: "says the pharmacy opens at nine"``) needs a judge. The factory is
called with no arguments and returns an object with
``judge(criterion, text, conversation) -> JudgeVerdict``
(:class:`~voxpipe.evals.graders.Judge`). Without one such criteria are
reported as not graded rather than guessed.
"""

from __future__ import annotations

import importlib
from typing import Any

from voxpipe.errors import ConfigError
from voxpipe.evals.graders import Judge, JudgeVerdict

__all__ = ["Judge", "JudgeVerdict", "load_judge"]


def load_judge(spec: str) -> Judge:
    """The judge ``module:factory`` builds; a clear error if it cannot be loaded."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConfigError(f"--judge {spec!r}: expected module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--judge {spec!r}: cannot import {module_name} ({exc})") from None
    factory: Any = getattr(module, factory_name, None)
    if not callable(factory):
        raise ConfigError(f"--judge {spec!r}: {module_name} has no callable {factory_name}")
    judge = factory()
    if not callable(getattr(judge, "judge", None)):
        raise ConfigError(f"--judge {spec!r}: the factory's result has no judge() method")
    return judge  # type: ignore[no-any-return]
