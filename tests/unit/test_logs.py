"""Logging: in JSON mode every line on stderr is a JSON object, whoever logged it (Tribunal's
structlog events, aiokafka's stdlib loggers, warnings), tracebacks included; repeated library
errors (a broker outage) are rate-limited with a count."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator

import orjson
import pytest
import structlog

from tribunal.core.logs import RepeatFilter, configure_logging, get_logger, log_uncaught


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


def _record(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_are_let_through_once_per_interval_with_the_count_held_back() -> None:
    """100 identical connection errors in 10 s make one line; the next one after the interval says 99 were held back."""
    now = [0.0]
    repeat = RepeatFilter(interval_s=10.0, clock=lambda: now[0])
    passed = []
    for n in range(100):
        now[0] = n * 0.1
        record = _record("Unable connect to node with id %s: %s", 1, "refused")
        if repeat.filter(record):
            passed.append(record.getMessage())
    now[0] = 10.5
    last = _record("Unable connect to node with id %s: %s", 1, "refused")
    assert repeat.filter(last)
    assert passed == ["Unable connect to node with id 1: refused"]
    assert "[99 similar lines suppressed" in last.getMessage()


def test_different_messages_and_loggers_are_limited_separately() -> None:
    """Each (logger, message template) has its own budget: a new error is never hidden by an old one."""
    repeat = RepeatFilter(interval_s=10.0, clock=lambda: 0.0)
    assert repeat.filter(_record("a %s", 1))
    assert repeat.filter(_record("b %s", 1))
    assert repeat.filter(_record("a %s", 1, name="aiokafka.client"))
    assert not repeat.filter(_record("a %s", 2))


def test_memory_is_bounded() -> None:
    """Past max_keys distinct templates the filter forgets, rather than growing without bound."""
    repeat = RepeatFilter(interval_s=10.0, clock=lambda: 0.0, max_keys=10)
    for n in range(1_000):
        repeat.filter(_record(f"unique {n}"))
    assert len(repeat._seen) <= 10
