"""orjson codecs for the message contracts: `encode(model) -> bytes`, `decode(bytes, Model)`.

Every decoding failure (not JSON, wrong shape, out-of-bounds text, label outside the task's
label set, oversized record) raises `DecodeError`, so a tier has exactly one poison case to route
to its dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from tribunal.schemas.messages import DEFAULT_MAX_TEXT_CHARS

if TYPE_CHECKING:
    from tribunal.schemas.tasks import TaskRegistry

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "DecodeContext", "DecodeError", "decode", "encode", "key"]

M = TypeVar("M", bound=BaseModel)

# Below Kafka's default max.message.bytes (1 MiB) so an accepted record is always producible.
DEFAULT_MAX_MESSAGE_BYTES = 900_000


class DecodeError(ValueError):
    """Bytes that are not a valid message of the expected kind. Poison: dead-letter it."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"not a valid {model}: {reason}")
        self.model = model
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """Limits and vocabulary that decoding enforces."""

    tasks: TaskRegistry | None = None
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def as_validation_context(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "max_text_chars": self.max_text_chars}


_DEFAULT_CONTEXT = DecodeContext()


def encode(model: BaseModel) -> bytes:
    """Serialise a message to compact JSON bytes."""
    return orjson.dumps(model.model_dump(mode="json"))


def decode(data: bytes | None, model: type[M], context: DecodeContext = _DEFAULT_CONTEXT) -> M:
    """Parse and validate `data` as `model`; raise `DecodeError` saying what was wrong."""
    name = model.__name__
    if data is None:
        raise DecodeError(name, "the record has no value (tombstone)")
    if len(data) > context.max_message_bytes:
        raise DecodeError(name, f"{len(data)} bytes, more than the limit of {context.max_message_bytes}")
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(name, f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DecodeError(name, f"expected a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw, context=context.as_validation_context())
    except ValidationError as exc:
        raise DecodeError(name, _summarise(exc)) from None


def key(item_id: str) -> bytes:
    """The record key of everything about one item: its id in utf-8."""
    return item_id.encode("utf-8")


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
