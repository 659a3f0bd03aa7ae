"""What the runtime hands a tier (`Record`, one consumed record, decoded) and the one way any tier
dead-letters a record (`dead_letter`, `dead_letter_of`): logged, counted, its original bytes kept.
`tribunal.core.runtime` re-exports all of it, the names tiers import."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from tribunal.core import intake, metrics
from tribunal.core.batches import Output
from tribunal.core.logs import get_logger
from tribunal.schemas.codec import DEFAULT_MAX_MESSAGE_BYTES, encode

__all__ = ["DeadLetterSource", "RawValue", "Record", "dead_letter", "dead_letter_of"]

M = TypeVar("M", bound=BaseModel)
log = get_logger("tribunal.runtime")


class RawValue(BaseModel):
    """The input model of a topic whose records a tier decodes itself (a user's source topic):
    the runtime hands such records over undecoded, `Record.value` being the bytes (None: a
    tombstone), and leaves every check, and every dead letter, to the tier."""


@dataclass(slots=True)  # not frozen: a frozen dataclass pays object.__setattr__ per field, per record
class Record(Generic[M]):
    """A consumed record, decoded. Treat as immutable."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: M
    timestamp_ms: int
    raw: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class DeadLetterSource:
    """Where a dead letter's record came from, with its original key and bytes (offset None: a
    record held in state whose position was not kept, such as a vote held until its item came)."""

    topic: str
    partition: int
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def dead_letter(
    dlq_topic: str,
    tier: str,
    source: DeadLetterSource,
    kind: str,
    message: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Output:
    """The one way any tier dead-letters a record: logged, counted, original bytes kept (a bounded
    prefix of them, with their length and sha256, when the whole would not fit: `intake`)."""
    log.warning(
        "sent_to_dlq",
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        error_kind=kind,
        error=message,
    )
    metrics.DEAD_LETTERS.labels(tier, source.topic, kind).inc()
    letter = intake.dead_letter(
        topic=source.topic, partition=source.partition, offset=source.offset, record_key=source.key,
        value=source.value, kind=kind, message=message, tier=tier, max_message_bytes=max_message_bytes,
        headers=source.headers,
    )  # fmt: skip
    short_key = None if source.key is None else source.key[: intake.KEY_PREFIX_BYTES]
    return Output(dlq_topic, encode(letter), key=short_key)


def dead_letter_of(
    record: Record[Any], dlq_topic: str, tier: str, kind: str, message: str, *, max_message_bytes: int | None = None
) -> Output:
    """`dead_letter` for a decoded record a processor gives up on (poison to its model)."""
    source = DeadLetterSource(record.topic, record.partition, record.offset, record.key, record.raw, record.headers)
    return dead_letter(
        dlq_topic, tier, source, kind, message, max_message_bytes=max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    )
