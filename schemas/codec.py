"""JSON codecs for the message contracts: `encode(model) -> bytes`, `decode(bytes, Model)`.

Every decoding failure (not JSON, wrong shape, out-of-bounds text, label outside the task's
label set, oversized record, a key that is not the item's id) raises `DecodeError`, so a tier
has exactly one poison case to route to its dead-letter topic; `DecodeError.kind` says which.

Size limits, end to end: a record a producer sends (an item, a vote) may have at most
`max_message_bytes`, key included, checked before it is parsed; so may its re-encoding (JSON can
grow when re-encoded: `1E9` becomes `1000000000.0`), since tiers copy items into the records
they derive. A derived record (a judge request, a verdict, an aggregator log record, a dead letter) is
an item plus at most `MAX_VOTES` bounded votes and an envelope, so it fits in
`max_message_bytes + RECORD_HEADROOM_BYTES` (`max_record_bytes`): the size that `topics create`
gives every topic and every producer's `max_request_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from tribunal.schemas.messages import DEFAULT_MAX_TEXT_CHARS, Message

if TYPE_CHECKING:
    from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "RECORD_HEADROOM_BYTES",
    "DecodeContext",
    "DecodeError",
    "check_key",
    "decode",
    "encode",
    "key",
]

M = TypeVar("M", bound=BaseModel)

# The largest record a producer may send; with the headroom, under Kafka's default 1 MiB of
# message.max.bytes is no longer required: `topics create` sets every topic's limit.
DEFAULT_MAX_MESSAGE_BYTES = 900_000
# Room for what a tier adds to an item it copies: up to MAX_VOTES votes of at most ~11 KB
# each (every field bounded, escapes included) and an envelope of a few KB.
RECORD_HEADROOM_BYTES = 256 * 1024
# Re-encoding can grow JSON at most ~4.5x (`1E15` -> `1000000000000000.0`): records above
# limit / GROWTH are re-encoded once to check; smaller ones cannot exceed the limit.
GROWTH = 5
# What a re-encoding may add on top of the limit: the defaults a producer may leave out
# (schema_version, produced_at, task, metadata) take a few dozen bytes. Within the headroom.
REENCODE_SLACK_BYTES = 4_096


class DecodeError(ValueError):
    """Bytes that are not a valid message of the expected kind. Poison: dead-letter it.

    `kind` names the problem for operators and metrics: `tombstone` (no value), `empty` (a
    zero-byte value), `oversize`, `key_mismatch`, or `decode` (anything else)."""

    def __init__(self, model: str, reason: str, kind: str = "decode") -> None:
        super().__init__(f"not a valid {model}: {reason}")
        self.model = model
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """Limits and vocabulary that decoding enforces."""

    tasks: TaskRegistry | None = None
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    _validation: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: decoding is per record, and the context never changes.
        object.__setattr__(self, "_validation", {"tasks": self.tasks, "max_text_chars": self.max_text_chars})

    @property
    def max_record_bytes(self) -> int:
        """The largest record any tier writes: a producer's limit plus the derived headroom."""
        return self.max_message_bytes + RECORD_HEADROOM_BYTES

    def limit_for(self, model: type[BaseModel]) -> int:
        """Bytes (key included) a record of `model` may have."""
        derived = issubclass(model, Message) and model.derived
        return self.max_record_bytes if derived else self.max_message_bytes

    def as_validation_context(self) -> dict[str, Any]:
        return self._validation


_DEFAULT_CONTEXT = DecodeContext()


def encode(model: BaseModel) -> bytes:
    """Serialise a message to compact JSON bytes (pydantic-core's serializer: no dict in between)."""
    return model.__pydantic_serializer__.to_json(model)


def decode(data: bytes | None, model: type[M], context: DecodeContext = _DEFAULT_CONTEXT, *, key_bytes: int = 0) -> M:
    """Parse and validate `data` as `model`; raise `DecodeError` saying what was wrong.

    `key_bytes` is the size of the record's key, which counts towards the record's size.
    Straight from bytes into the model (pydantic-core parses the JSON itself), about twice as
    fast as building a dict first; the hot path of every tier."""
    name = model.__name__
    if data is None:
        raise DecodeError(name, "the record has no value (a tombstone)", "tombstone")
    if not data:
        raise DecodeError(name, "the record's value is empty (0 bytes)", "empty")
    limit = context.limit_for(model)
    if len(data) + key_bytes > limit:
        raise DecodeError(name, f"{len(data) + key_bytes} bytes, more than the limit of {limit}", "oversize")
    try:
        value: M = model.__pydantic_validator__.validate_json(data, context=context.as_validation_context())
    except ValidationError as exc:
        raise DecodeError(name, _summarise(exc)) from None
    size = len(data) + key_bytes
    if size * GROWTH > limit and (grown := len(encode(value)) + key_bytes) > limit + REENCODE_SLACK_BYTES:
        raise DecodeError(name, f"{grown} bytes once re-encoded, more than the limit of {limit}", "oversize")
    return value


def check_key(value: BaseModel, record_key: bytes | None) -> None:
    """Raise `DecodeError` (kind `key_mismatch`) unless the record's key is its item's id.

    Everything about one item must land on one partition, chosen by its key: a record whose key
    is not its id could reach another aggregator and give the item a second label."""
    expected = value.item_key if isinstance(value, Message) else None
    if expected is not None and record_key != key(expected):
        shown = "no key" if record_key is None else f"key {record_key[:80]!r}"
        raise DecodeError(type(value).__name__, f"{shown} is not its item id {expected[:80]!r}", "key_mismatch")


def key(item_id: str) -> bytes:
    """The record key of everything about one item: its id in utf-8."""
    return item_id.encode("utf-8")


def _summarise(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return f"not JSON ({errors[0]['msg']})"
    if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
        return "expected a JSON object"
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
