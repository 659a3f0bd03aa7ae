"""Every error Tribunal raises on purpose, and what the runtime does with each.

    TribunalError
     ├── PoisonError        bad input: dead-letter it with its original bytes, commit, go on
     │    └── InvalidOutputError   a model answered outside the task's label set
     ├── RetryableError     transient (timeouts, 429/5xx, recoverable engine errors): back off,
     │                      retry, and treat as poison once the retries are spent
     │    ├── ClassifierError      a classifier failed on a batch
     │    └── ServerUnavailableError  a model server is down (its client already retried, or
     │                                its circuit breaker is open): never split the batch;
     │                                workers abstain, the judge exits without committing
     └── FatalError         cannot go on (bad config, dead engine, fenced producer): log, do not
          ├── ConfigError   commit, exit non-zero so the supervisor restarts the process
          └── BrokerUnavailableError

`schemas.codec.DecodeError` and `schemas.tasks.TaskError` are ValueErrors raised by pure code
without this package; the runtime treats them as poison.

Code steers by `disposition(exc)`, never by message text: each class says what it is with the
`poison`/`retriable` flags (as aiokafka's errors carry `retriable`). An exception that is not
Tribunal's own (a third-party engine failing) counts as retryable: the batch is retried with
backoff, and once the retries are spent the item that still fails is isolated as poison.

Every command exits with one of `ExitCode`, after one line on stderr (never a traceback).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar, Literal

from tribunal.schemas.codec import DecodeError
from tribunal.schemas.tasks import TaskError

Disposition = Literal["poison", "retry", "outage", "fatal"]

__all__ = [
    "BrokerUnavailableError",
    "ClassifierError",
    "ConfigError",
    "Disposition",
    "ExitCode",
    "FatalError",
    "InvalidOutputError",
    "PoisonError",
    "RetryableError",
    "ServerUnavailableError",
    "TribunalError",
    "disposition",
]


class ExitCode(IntEnum):
    """What a `tribunal` command's exit status means."""

    OK = 0
    # A fatal error: bad settings, a failed transaction, a model that cannot load.
    FATAL = 2
    # No Kafka broker answered at the configured address (within `runtime.broker_wait_s` for tiers).
    BROKER_UNAVAILABLE = 3
    # `ingest`: the input was read to its end; some lines were rejected, every other published.
    SOME_REJECTED = 4
    # `ingest`: lines were read, every one was rejected, nothing was published.
    ALL_REJECTED = 5
    # Stopped by SIGINT/SIGTERM before finishing (128 + SIGINT, as shells report it).
    INTERRUPTED = 130


class TribunalError(Exception):
    """Base of Tribunal's own errors. The message says what was wrong and what to do."""

    poison: ClassVar[bool] = False
    retriable: ClassVar[bool] = False
    # The dependency (a model server), not the input, is failing, and its client already
    # retried: retrying again or splitting the batch would only hammer it.
    outage: ClassVar[bool] = False


class PoisonError(TribunalError):
    """This input can never be processed; route it to the dead-letter topic."""

    poison = True


class InvalidOutputError(PoisonError):
    """A model produced a label outside the task's label set."""


class RetryableError(TribunalError):
    """A transient failure; the same call may succeed later."""

    retriable = True


class ClassifierError(RetryableError):
    """A classifier could not label a batch (timeout, server error, engine hiccup)."""


class ServerUnavailableError(RetryableError):
    """A model server cannot be used now; the client's own retries are spent."""

    outage = True


class FatalError(TribunalError):
    """The process cannot continue; exit non-zero without committing."""


class ConfigError(FatalError):
    """A setting is missing or wrong."""


class BrokerUnavailableError(FatalError):
    """No Kafka broker answered at the configured address."""


def disposition(exc: BaseException) -> Disposition:
    """What to do about `exc`: dead-letter the input, back off and retry, let the caller handle
    an outage of a server (workers abstain, the judge exits), or exit."""
    if isinstance(exc, TribunalError):
        if exc.outage:
            return "outage"
        return "poison" if exc.poison else "retry" if exc.retriable else "fatal"
    if isinstance(exc, DecodeError | TaskError):
        return "poison"
    return "retry"
