"""``[delegate]`` for ``voxpipe call``, ``serve`` and ``daily``: checked before any call.

The agent file's ``[delegate]`` table makes the voice model hand hard turns
to a backend model, a filler covering a long wait (:mod:`voxpipe.delegation`).
The three commands build the same graph, so they read the table the same way
and refuse it the same way: on a mode or beside a setting that would not
carry it out, the command stops with a ``DelegationConfigError`` naming the
file, before a server starts or an output directory is made.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxpipe.delegation import DelegationSettings


def delegate_settings(agent: Any, mode: str, fallback: Any = None) -> DelegationSettings | None:
    """The call's delegation (None: the file has no ``[delegate]``), checked for ``mode``.

    ``agent`` is the loaded agent file (or None), ``fallback`` the call's
    fallback brain, if any.
    """
    from voxpipe.agents import BrainPath
    from voxpipe.delegation import check_delegation

    settings = getattr(agent, "delegate", None)
    if settings is None:
        return None
    check_delegation(
        settings,
        agent.source,
        BrainPath(mode),
        agents=agent.agents is not None,
        llm_slots=agent.chained.llm is not None,
        fallback=fallback is not None,
        openai_key=bool(os.environ.get("OPENAI_API_KEY")),
    )
    return settings  # type: ignore[no-any-return]
