"""Which log lines reach stderr: voxpipe's at INFO, pipecat's at WARNING, unless asked.

voxpipe and pipecat both log through loguru, whose records carry the emitting
module's name (``voxpipe.processors.guardrails.tap``, ``pipecat.transports.base_output``).
pipecat logs at DEBUG as it links processors, measures every service call
(TTFB, processing time, usage) and moves turns along: 87 lines in the 25 s
``voxpipe demo`` call on the realtime path, 114 on the chained one, plus its
version banner at INFO. One stderr handler filters by name (:class:`LogLevels`):

- default: voxpipe from INFO (a tripped guardrail, a rollover, a server
  session opening), pipecat from WARNING, anything else (the application's
  own loggers) from DEBUG, as loguru's own default handler does;
- verbose (``voxpipe -v``, ``configure_logging(verbose=True)``): everything from DEBUG;
- ``VOXPIPE_LOG_LEVEL=LEVEL`` (or ``level=``): everything from LEVEL.

``import voxpipe`` installs this handler only in place of loguru's untouched
default one; an application that configured loguru itself keeps its handlers
(:func:`quiet_default_handler`). The level choice is sans-I/O and tested
synchronously; the two functions that touch loguru are the glue.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from voxpipe.errors import ConfigError

if TYPE_CHECKING:
    from loguru import Record

LEVEL_ENV = "VOXPIPE_LOG_LEVEL"

# loguru's built-in levels (the standard library's numbers, plus TRACE and SUCCESS).
LEVELS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}


@dataclass(frozen=True)
class LogLevels:
    """The lowest level shown for voxpipe's records, pipecat's, and everyone else's."""

    voxpipe: int = LEVELS["INFO"]
    pipecat: int = LEVELS["WARNING"]
    other: int = LEVELS["DEBUG"]

    def threshold(self, name: str | None) -> int:
        """The lowest level shown for a record from module ``name``."""
        if name is None:
            return self.other
        if _within(name, "pipecat"):
            return self.pipecat
        if _within(name, "voxpipe"):
            return self.voxpipe
        return self.other

    def allows(self, name: str | None, level_no: int) -> bool:
        """Whether a record of ``level_no`` from module ``name`` is shown."""
        return level_no >= self.threshold(name)

    @property
    def lowest(self) -> int:
        """The handler's own level: the lowest of the three."""
        return min(self.voxpipe, self.pipecat, self.other)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def parse_level(text: str, *, source: str = LEVEL_ENV) -> int:
    """A level name (``debug``, ``INFO``) or number; ``source`` names it in the error."""
    cleaned = text.strip().upper()
    if cleaned.isdigit():
        return int(cleaned)
    if cleaned not in LEVELS:
        raise ConfigError(
            f"{source}={text!r} is not a log level",
            hint="one of " + ", ".join(LEVELS),
        )
    return LEVELS[cleaned]


def choose_levels(*, verbose: bool = False, level: str | None = None) -> LogLevels:
    """The levels for a verbose flag and an explicit level (``VOXPIPE_LOG_LEVEL``).

    Verbose wins: it is the more specific request (a flag on this very command).
    """
    if verbose:
        debug = LEVELS["DEBUG"]
        return LogLevels(voxpipe=debug, pipecat=debug, other=debug)
    if level:
        number = parse_level(level)
        return LogLevels(voxpipe=number, pipecat=number, other=number)
    return LogLevels()


def configure_logging(
    *, verbose: bool = False, level: str | None = None, sink: TextIO | None = None
) -> LogLevels:
    """Send loguru's records to ``sink`` (stderr) filtered by :class:`LogLevels`.

    Replaces every loguru handler (an application calls this instead of
    configuring loguru itself). ``level`` defaults to ``$VOXPIPE_LOG_LEVEL``.
    Raises :class:`~voxpipe.errors.ConfigError` for a level that does not exist.
    """
    from loguru import logger

    chosen = level if level is not None else os.environ.get(LEVEL_ENV)
    levels = choose_levels(verbose=verbose, level=chosen)
    logger.remove()
    _add_handler(levels, sink)
    return levels


def quiet_default_handler() -> None:
    """Replace loguru's default handler (id 0, everything from DEBUG) with voxpipe's.

    Does nothing when the application has already removed it (it configured
    loguru itself). A bad ``VOXPIPE_LOG_LEVEL`` falls back to the defaults
    with a warning: importing a library must not fail on a log setting.
    """
    from loguru import logger

    try:
        logger.remove(0)
    except ValueError:
        return
    try:
        levels = choose_levels(level=os.environ.get(LEVEL_ENV))
    except ConfigError as exc:
        _add_handler(LogLevels(), None)
        logger.warning(f"{exc}; using the default levels")
        return
    _add_handler(levels, None)


def _add_handler(levels: LogLevels, sink: TextIO | None) -> None:
    from loguru import logger

    def shown(record: Record) -> bool:
        return levels.allows(record["name"], record["level"].no)

    target: Any = sink if sink is not None else sys.stderr
    logger.add(target, level=levels.lowest, filter=shown)
