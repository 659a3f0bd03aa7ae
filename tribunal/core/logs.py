"""structlog set-up: JSON lines unless stderr is a terminal; one canonical line per unit of work.

Everything a process logs leaves through ONE stdlib handler whose formatter is structlog's
`ProcessorFormatter`: Tribunal's own structlog events and every stdlib logger (aiokafka,
asyncio, warnings) alike. So in JSON mode every line on stderr is a JSON object, tracebacks
included (as an `exception` field), and a log shipper never meets a plain-text line in between.

Context (tier, topic, partition, offset, item_id) is bound through contextvars so every line
of a unit of work carries it. Secrets never reach a log: settings hold them as `SecretStr`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import structlog

__all__ = ["RepeatFilter", "configure_logging", "get_logger", "is_configured", "log_uncaught"]

# Libraries (aiokafka above all) are chatty at info level; their warnings and errors are kept.
FOREIGN_LEVEL = logging.WARNING
# Through a broker outage aiokafka logs every failed connection attempt (ten a second per
# client): one line per message per this many seconds, with the count of those held back.
REPEAT_INTERVAL_S = 10.0
_state = {"configured": False}


class RepeatFilter(logging.Filter):
    """Lets through one foreign record per (logger, message template) every `interval_s`; the next
    one let through says how many were suppressed meanwhile. Tribunal's own events (one line
    per unit of work) are never held back. Remembers at most `max_keys` templates."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000
    ) -> None:
        super().__init__()
        self._interval = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("tribunal"):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= self._max_keys and key not in self._seen:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} [{last[1]} similar lines suppressed in the last {now - last[0]:.0f}s]"
        return True


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured (test
    harnesses and embedding programs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _shared_processors() -> list[structlog.typing.Processor]:
    """What both Tribunal's events and foreign stdlib records get before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(use_json: bool) -> structlog.stdlib.ProcessorFormatter:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    # The console renderer draws tracebacks itself; JSON needs them as a string field.
    exceptions: list[structlog.typing.Processor] = [structlog.processors.format_exc_info] if use_json else []
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer],
    )


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", tier: str | None = None
) -> None:
    """Configure logging once per process; `auto` means pretty on a terminal, JSON otherwise."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(_formatter(use_json))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(FOREIGN_LEVEL)
    # Tribunal's events are filtered by structlog below; stdlib must let them all through.
    logging.getLogger("tribunal").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if tier:
        structlog.contextvars.bind_contextvars(tier=tier)
    # An exception nobody caught would otherwise print a plain-text traceback.
    sys.excepthook = log_uncaught
    _state["configured"] = True


def is_configured() -> bool:
    """Whether this process set up logging (tiers do; one-shot commands print plain text)."""
    return _state["configured"]


def log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """`sys.excepthook`: the traceback as one `uncaught_exception` log line."""
    get_logger("tribunal.process").critical("uncaught_exception", exc_info=(kind, value, tb))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
