"""Logging: in JSON mode every line on stderr is a JSON object, whoever logged it (Tribunal's
structlog events, aiokafka's stdlib loggers, warnings), tracebacks included."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator

import orjson
import pytest
import structlog

from tribunal.core.logs import configure_logging, get_logger, log_uncaught


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Configure JSON logging onto the captured stderr; restore stdlib logging afterwards."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    configure_logging("json", "info", tier="test")
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    err = capsys.readouterr().err
    return [orjson.loads(line) for line in err.splitlines() if line.strip()]


def test_structlog_events_are_json_with_context(json_lines: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A Tribunal event is one JSON line with its level, logger, timestamp and bound tier."""
    get_logger("tribunal.test").info("verdict_emitted", item_id="x1")
    (line,) = _lines(capsys)
    assert line["event"] == "verdict_emitted" and line["item_id"] == "x1"
    assert line["level"] == "info" and line["tier"] == "test" and line["logger"] == "tribunal.test"
    assert "timestamp" in line


def test_aiokafka_lines_and_tracebacks_are_json(json_lines: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A stdlib logger's error with a traceback becomes JSON with the traceback as a field."""
    try:
        raise ConnectionError("broker gone")
    except ConnectionError:
        logging.getLogger("aiokafka.consumer").exception("Unexpected error in fetcher")
    (line,) = _lines(capsys)
    assert line["event"] == "Unexpected error in fetcher" and line["logger"] == "aiokafka.consumer"
    assert "ConnectionError: broker gone" in str(line["exception"]) and "Traceback" in str(line["exception"])


def test_foreign_info_chatter_is_dropped(json_lines: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Libraries log at warning and above; Tribunal's own info lines still pass."""
    logging.getLogger("aiokafka.conn").info("connecting")
    get_logger("tribunal.test").info("still_here")
    assert [line["event"] for line in _lines(capsys)] == ["still_here"]


def test_warnings_and_uncaught_exceptions_are_json(json_lines: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Python warnings and an uncaught exception (sys.excepthook) are JSON lines too."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated knob", UserWarning, stacklevel=1)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log_uncaught(RuntimeError, exc, exc.__traceback__)
    lines = _lines(capsys)
    assert "deprecated knob" in str(lines[0]["event"])
    assert lines[1]["event"] == "uncaught_exception" and "RuntimeError: boom" in str(lines[1]["exception"])
