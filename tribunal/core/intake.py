"""What a tier accepts from a topic, and the dead letter of what it refuses.

`admit` is the one gate between Kafka bytes and a tier: size first (before any parsing), then
shape (`schemas.codec.decode`), then identity: the record's key must be its item's id, and an
item must sit on the partition its key hashes to with Kafka's default (murmur2) partitioner.
Either breach would let one item id reach two aggregator partitions and get two labels. Every
refusal is a `DecodeError` whose `kind` names it.

`dead_letter` builds the `DeadLetter` of a refused record: the original key and value (base64),
cut to a bounded prefix when the whole would not fit in a record, with their length and
sha256, so a letter is always producible whatever was sent.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel

from tribunal.schemas.codec import DecodeContext, DecodeError, check_key, decode
from tribunal.schemas.messages import DeadLetter, Item

__all__ = [
    "HEADER_BYTES",
    "KEY_PREFIX_BYTES",
    "MAX_HEADERS",
    "admit",
    "dead_letter",
    "default_partition",
    "headers_b64",
    "murmur2",
    "value_prefix_bytes",
]

M = TypeVar("M", bound=BaseModel)

# Enough of a key to recognise it; ids are at most 256 characters (1 KB of utf-8).
KEY_PREFIX_BYTES = 1_024
# Headers a dead letter or a source record keeps: within the record headroom.
MAX_HEADERS = 256
HEADER_BYTES = 64 * 1024
# Models whose records must be on the partition their key hashes to: the aggregator's state is
# per partition, so an item on another partition would be a second, independent item.
_KEYED_PARTITION: tuple[type[BaseModel], ...] = (Item,)
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as aiokafka's pure-Python
    one computes it, reading 4-byte words at once (a few times faster: it runs on every item)."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def default_partition(record_key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, aiokafka, librdkafka's murmur2) picks."""
    return (murmur2(record_key) & 0x7FFFFFFF) % partitions


def admit(
    value: bytes | None,
    record_key: bytes | None,
    partition: int,
    model: type[M],
    context: DecodeContext,
    partitions: int | None = None,
) -> M:
    """The record as `model`, or `DecodeError` saying why it is refused (see the module doc).

    `partitions` is the topic's partition count, for the partition check (None skips it)."""
    decoded = decode(value, model, context, key_bytes=len(record_key) if record_key else 0)
    check_key(decoded, record_key)
    if partitions and record_key is not None and issubclass(model, _KEYED_PARTITION):
        expected = default_partition(record_key, partitions)
        if partition != expected:
            raise DecodeError(
                model.__name__,
                f"on partition {partition}, but its key hashes to partition {expected} of {partitions} "
                "(produce with Kafka's default murmur2 partitioner)",
                "wrong_partition",
            )
    return decoded


def value_prefix_bytes(max_message_bytes: int) -> int:
    """How much of a value a dead letter carries: base64 of it stays within `max_message_bytes`,
    leaving the derived headroom for the key, the reason and the envelope."""
    return max_message_bytes * 3 // 4


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int | None,
    record_key: bytes | None,
    value: bytes | None,
    kind: str,
    message: str,
    tier: str,
    max_message_bytes: int,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> DeadLetter:
    """The letter of one refused record (see the module doc): always small enough to produce."""
    limit = value_prefix_bytes(max_message_bytes)
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=_b64(record_key, KEY_PREFIX_BYTES),
        key_truncated=record_key is not None and len(record_key) > KEY_PREFIX_BYTES,
        value_b64=_b64(value, limit),
        value_bytes=None if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        value_truncated=value is not None and len(value) > limit,
        headers=headers_b64(headers),
        error_kind=kind,
        error_message=message[:4000],
        tier=tier,
    )


def headers_b64(headers: Sequence[tuple[str, bytes | None]]) -> tuple[tuple[str, str], ...]:
    """Record headers as (name, base64 value) pairs, as many as fit in `HEADER_BYTES` (a letter
    must stay producible; headers past that are dropped, which is rare: Kafka clients send few)."""
    kept: list[tuple[str, str]] = []
    size = 0
    for name, value in headers[:MAX_HEADERS]:
        encoded = base64.b64encode(value or b"").decode()
        size += len(name) + len(encoded)
        if size > HEADER_BYTES:
            break
        kept.append((name, encoded))
    return tuple(kept)


def _b64(data: bytes | None, limit: int) -> str | None:
    return None if data is None else base64.b64encode(data[:limit]).decode()
