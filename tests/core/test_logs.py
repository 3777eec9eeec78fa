"""Which log records reach stderr: the level table, and the handler that applies it."""

from __future__ import annotations

import io

import pytest
from loguru import logger

from voxpipe.errors import ConfigError
from voxpipe.logs import LEVELS, LogLevels, choose_levels, configure_logging, parse_level

DEBUG, INFO, WARNING = LEVELS["DEBUG"], LEVELS["INFO"], LEVELS["WARNING"]

# (record's module, level, shown by default?)
DEFAULTS = [
    ("pipecat.processors.frame_processor", DEBUG, False),  # linking, metrics, turn events
    ("pipecat", INFO, False),  # pipecat's version banner
    ("pipecat.utils.asyncio.task_manager", WARNING, True),
    ("voxpipe.processors.guardrails.tap", INFO, True),  # a tripped guardrail
    ("voxpipe.processors.realtime.base", DEBUG, False),
    ("voxpipe", INFO, True),
    ("pipecatalog.module", DEBUG, True),  # a name that only starts like pipecat's
    ("__main__", DEBUG, True),  # the application's own lines stay as loguru shows them
    (None, DEBUG, True),
]


@pytest.mark.parametrize(("name", "level", "shown"), DEFAULTS)
def test_by_default_voxpipe_shows_info_and_pipecat_only_warnings(
    name: str | None, level: int, shown: bool
) -> None:
    assert LogLevels().allows(name, level) is shown


@pytest.mark.parametrize(
    ("verbose", "level", "expected"),
    [
        (False, None, LogLevels()),
        (True, None, LogLevels(DEBUG, DEBUG, DEBUG)),
        (False, "warning", LogLevels(WARNING, WARNING, WARNING)),
        (True, "ERROR", LogLevels(DEBUG, DEBUG, DEBUG)),  # the flag on the command wins
        (False, "", LogLevels()),
        (False, "15", LogLevels(15, 15, 15)),
    ],
)
def test_verbose_and_an_explicit_level_choose_one_level_for_all(
    verbose: bool, level: str | None, expected: LogLevels
) -> None:
    assert choose_levels(verbose=verbose, level=level) == expected


def test_an_unknown_level_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_level("LOUD")
    assert "VOXPIPE_LOG_LEVEL='LOUD'" in str(raised.value)
    assert "DEBUG" in str(raised.value)


def test_the_handler_filters_records_by_the_module_that_logged_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VOXPIPE_LOG_LEVEL", raising=False)
    sink = io.StringIO()
    try:
        configure_logging(level="INFO", sink=sink)
        as_pipecat = logger.patch(lambda r: r.update(name="pipecat.transports.base_output"))
        as_voxpipe = logger.patch(lambda r: r.update(name="voxpipe.pipelines.session"))
        as_pipecat.debug("a frame went by")
        as_pipecat.warning("pipecat warns")
        as_voxpipe.info("voxpipe informs")
        configure_logging(sink=sink)  # the defaults: pipecat's INFO is dropped
        as_pipecat.info("pipecat informs")
        as_voxpipe.info("voxpipe informs again")
    finally:
        logger.remove()
        configure_logging()
    written = sink.getvalue()
    assert "a frame went by" not in written and "pipecat informs" not in written
    assert "pipecat warns" in written
    assert "voxpipe informs" in written and "voxpipe informs again" in written
