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
from types import TracebackType
from typing import Literal

import structlog

__all__ = ["configure_logging", "get_logger", "is_configured", "log_uncaught"]

# Libraries (aiokafka above all) are chatty at info level; their warnings and errors are kept.
FOREIGN_LEVEL = logging.WARNING
_state = {"configured": False}


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
