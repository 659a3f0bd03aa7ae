"""A decoded source record -> the fields of an `Item`: pure, no Kafka, no registry.

A `SourceMapping` is compiled once from a `[[source]]` table (field paths parsed, the text
template split) and applied per record. Every way a record can fail to map is a `MappingError`
(a `DecodeError`: poison, one dead letter) whose `kind` names it: `missing_field`,
`wrong_type`, `missing_key`, `bad_id`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tribunal.core.connect_settings import KEY_ID, OFFSET_ID, SourceSettings
from tribunal.core.errors import ConfigError
from tribunal.schemas.codec import DecodeError

__all__ = ["MappedItem", "MappingError", "SourceMapping", "jsonable", "offset_id", "parse_path", "parse_template"]

_MISSING = object()
_BAD_ID = re.compile(r"[\x00-\x1f]")
MAX_ID_CHARS = 256


class MappingError(DecodeError):
    """A record that does not fit its source's mapping (poison: dead-lettered with `kind`)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__("source record", reason, kind)


@dataclass(frozen=True, slots=True)
class MappedItem:
    id: str
    text: str
    task: str
    metadata: dict[str, Any]


Path = tuple[str, ...]
# A template: literal text and field paths, alternating as written.
Template = tuple[str | Path, ...]


def parse_path(path: str) -> Path:
    """`a.b.0` -> ("a", "b", "0"): names, or list positions when the value there is a list."""
    parts = tuple(path.split("."))
    if not path or any(not part for part in parts):
        raise ConfigError(f"field path {path!r} has an empty part: write names joined by dots, e.g. ticket.subject")
    return parts


def parse_template(text: str) -> Template:
    """`"{subject}\\n\\n{body}"` -> ((subject,), "\\n\\n", (body,)); `{{` and `}}` are braces.
    A string without braces is one field path (the common case: `text = "body"`)."""
    if "{" not in text and "}" not in text:
        return (parse_path(text),)
    pieces: list[str | Path] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(char)
            i += 2
        elif char == "{":
            end = text.find("}", i)
            if end < 0:
                raise ConfigError(f"template {text!r} opens a field with '{{' that is never closed")
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(parse_path(text[i + 1 : end].strip()))
            i = end + 1
        elif char == "}":
            raise ConfigError(f"template {text!r} has a lone '}}' (write '}}}}' for a brace)")
        else:
            literal.append(char)
            i += 1
    if literal:
        pieces.append("".join(literal))
    if not any(isinstance(piece, tuple) for piece in pieces):
        raise ConfigError(f"template {text!r} names no field: put field paths in braces, e.g. '{{subject}}'")
    return tuple(pieces)


def lookup(record: Any, path: Path) -> Any:
    """The value at `path`, or `MappingError(missing_field)`."""
    value = record
    for depth, part in enumerate(path):
        # `type(...) is dict` first: the common case, without the ABC check's cost.
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else _MISSING
        else:
            value = _MISSING
        if value is _MISSING:
            where = ".".join(path[: depth + 1])
            raise MappingError(f"field {where} is missing", "missing_field")
    return value


def offset_id(topic: str, partition: int, offset: int) -> str:
    """The id of a record without one: where it sits (a topic name near Kafka's 249-character
    limit is hashed, so the id stays within 256 characters)."""
    place = topic if len(topic) <= 200 else hashlib.sha256(topic.encode()).hexdigest()[:32]
    return f"{place}/{partition}/{offset}"


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """A `[[source]]` table's mapping, compiled (see the module doc)."""

    name: str
    whole_text: bool  # format text: the value is the text
    id: Path | None  # None: KEY_ID or OFFSET_ID in `id_mode`
    id_mode: str
    text: Template
    task: str
    task_field: Path | None
    gold_field: Path | None
    keep_fields: tuple[tuple[str, Path], ...]
    keep_headers: frozenset[str]

    @classmethod
    def of(cls, source: SourceSettings, task_names: Sequence[str]) -> SourceMapping:
        """Compile `source`; `ConfigError` says what to change in it."""
        whole_text = source.format == "text"
        fields_used = [source.task_field, source.gold_field, *source.keep_fields]
        if source.id not in (KEY_ID, OFFSET_ID):
            fields_used.append(source.id)
        if whole_text and any(f is not None for f in fields_used):
            raise ConfigError(f"source {source.name} reads text values: it has no fields (id may be @key or @offset)")
        task = source.task
        if task is None:
            if len(task_names) != 1:
                raise ConfigError(f"source {source.name}: set task (one of {list(task_names)}) or task_field")
            task = task_names[0]
        elif task not in task_names:
            raise ConfigError(f"source {source.name}: task {task!r} is not one of {list(task_names)}")
        return cls(
            name=source.name,
            whole_text=whole_text,
            id=None if source.id in (KEY_ID, OFFSET_ID) else parse_path(source.id),
            id_mode=source.id,
            text=() if whole_text else parse_template(source.text),
            task=task,
            task_field=None if source.task_field is None else parse_path(source.task_field),
            gold_field=None if source.gold_field is None else parse_path(source.gold_field),
            keep_fields=tuple((field, parse_path(field)) for field in source.keep_fields),
            keep_headers=frozenset(source.keep_headers),
        )

    def map(
        self,
        record: Any,
        key: bytes | None,
        where: tuple[str, int, int],
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> MappedItem:
        """The item fields of one decoded record (a dict, or a str for text sources) that sits at
        `where` (topic, partition, offset); `MappingError` if it does not fit."""
        text = record if self.whole_text else self._text(record)
        metadata: dict[str, Any] = {}
        for name, path in self.keep_fields:
            metadata[name] = jsonable(lookup(record, path))
        for name, value in headers:
            if name in self.keep_headers:
                metadata[f"header.{name}"] = None if value is None else value.decode("utf-8", "replace")
        if self.gold_field is not None:
            gold = lookup(record, self.gold_field)
            if gold is not None:
                metadata["label"] = _string(gold, self.gold_field, "gold label")
        task = self.task if self.task_field is None else _string(lookup(record, self.task_field), self.task_field)
        return MappedItem(self._id(record, key, where), text, task, metadata)

    def _text(self, record: Any) -> str:
        if len(self.text) == 1 and isinstance(self.text[0], tuple):
            return _string(lookup(record, self.text[0]), self.text[0], "text")
        parts = []
        for piece in self.text:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                value = lookup(record, piece)
                parts.append("" if value is None else _string(value, piece, "text", numbers=True))
        return "".join(parts)

    def _id(self, record: Any, key: bytes | None, where: tuple[str, int, int]) -> str:
        if self.id is not None:
            value = lookup(record, self.id)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            item_id = _string(value, self.id, "id")
        elif self.id_mode == KEY_ID:
            if key is None:
                raise MappingError("the record has no key, and the source's id is @key", "missing_key")
            try:
                item_id = key.decode("utf-8")
            except UnicodeDecodeError:
                raise MappingError("the record key is not UTF-8 text, and the source's id is @key", "bad_id") from None
        else:
            return offset_id(*where)
        if not item_id or len(item_id) > MAX_ID_CHARS or _BAD_ID.search(item_id):
            raise MappingError(f"id must be 1 to {MAX_ID_CHARS} characters without control characters", "bad_id")
        return item_id


def _string(value: Any, path: Path, what: str = "field", *, numbers: bool = False) -> str:
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    kind = "null" if value is None else type(value).__name__
    raise MappingError(f"{what} field {'.'.join(path)} is {kind}, not a string", "wrong_type")


def jsonable(value: Any) -> Any:
    """A decoded value (Avro gives bytes, datetimes, decimals, UUIDs) as JSON for metadata."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return str(value)
