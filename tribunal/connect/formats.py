"""A source record's bytes -> its decoded value, by the source's `format`.

- `json`: a JSON object;
- `text`: the UTF-8 value itself;
- `jsonschema`: the same frame around a JSON object (the writer's serializer validated it
  against its schema; the schema id must name a JSON Schema the registry has);
- `avro`: Confluent wire format (magic byte, schema id; or the id in a `__value_schema_id`
  header where newer serializers put it), the writer schema fetched from the registry by id,
  the body read by fastavro.

Every way bytes can be wrong is a `MappingError` (poison): `tombstone`, `empty`, `oversize`,
`not_utf8`, `not_json`, `not_object`, `bad_framing`, `unknown_schema`, `corrupt_avro`. A registry
that does not answer is waited for (`tribunal.connect.registry`), never a dead letter.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson

from tribunal.connect.mapping import MappingError
from tribunal.connect.registry import SchemaRegistry
from tribunal.core.connect_settings import REGISTRY_FORMATS, SourceFormat

__all__ = ["SCHEMA_ID_HEADER", "SourceDecoder", "framed_body"]

# Where newer Confluent serializers put the value's schema id (a GUID) instead of the prefix.
SCHEMA_ID_HEADER = "__value_schema_id"


class SourceDecoder:
    """Decodes one source's values (see the module doc)."""

    def __init__(self, fmt: SourceFormat, max_value_bytes: int, registry: SchemaRegistry | None = None) -> None:
        if fmt in REGISTRY_FORMATS and registry is None:
            raise ValueError(f"the {fmt} format needs a schema registry")
        self.format = fmt
        self._limit = max_value_bytes
        self._registry = registry

    async def decode(self, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> Any:
        if value is None:
            raise MappingError("the record has no value (a tombstone)", "tombstone")
        if not value:
            raise MappingError("the record's value is empty", "empty")
        if len(value) > self._limit:
            raise MappingError(
                f"the value has {len(value)} bytes, more than the source's max_value_bytes ({self._limit})", "oversize"
            )
        if self.format == "text":
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MappingError(
                    f"the value is not UTF-8 text ({exc.reason} at byte {exc.start})", "not_utf8"
                ) from None
        if self.format == "json":
            return _json_object(value)
        assert self._registry is not None
        schema_key, body = framed_body(value, headers)
        if self.format == "jsonschema":
            await self._registry.json_schema(schema_key)  # it exists, and it is a JSON Schema
            return _json_object(body.read())
        parsed = await self._registry.avro_schema(schema_key)
        return _read_avro(body, parsed)


def framed_body(value: bytes, headers: Sequence[tuple[str, bytes | None]] = ()) -> tuple[int | str, io.BytesIO]:
    """(schema id, the body) of a Confluent-framed value (Avro or JSON Schema): the common frame (magic byte 0,
    4-byte id, no schema-id header) read here, every other (a GUID prefix, an id in the
    `__value_schema_id` header) by confluent-kafka's own framing reader, header first."""
    if value[:1] == b"\x00" and len(value) >= 5 and not any(name == SCHEMA_ID_HEADER for name, _ in headers):
        body = io.BytesIO(value)
        body.seek(5)
        return int.from_bytes(value[1:5], "big"), body
    from confluent_kafka.schema_registry import dual_schema_id_deserializer
    from confluent_kafka.schema_registry.common.serde import SchemaId
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema_id = SchemaId("AVRO")
    try:
        body = dual_schema_id_deserializer(
            value, SerializationContext("", MessageField.VALUE, list(headers)), schema_id
        )
    except Exception as exc:  # noqa: BLE001 - SerializationError, struct.error, ValueError: bad framing
        raise MappingError(
            f"the value is not in the Schema Registry wire format (magic byte, schema id): {exc}", "bad_framing"
        ) from None
    # A schema GUID (magic byte 1, or the header newer serializers write) or a numeric id.
    return (int(schema_id.id) if schema_id.id is not None else str(schema_id.guid)), body


def _read_avro(body: io.BytesIO, parsed: Any) -> Any:
    import fastavro

    try:
        record = fastavro.schemaless_reader(body, parsed, None)
    except Exception as exc:  # noqa: BLE001 - fastavro raises EOFError, ValueError, IndexError... on bad bytes
        raise MappingError(
            f"the Avro body does not match its writer schema ({type(exc).__name__})", "corrupt_avro"
        ) from None
    if body.read(1):
        raise MappingError("the Avro body has bytes after the record its schema describes", "corrupt_avro")
    return record


def _json_object(value: bytes) -> dict[str, Any]:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        kind = "not_utf8" if "utf-8" in str(exc).lower() else "not_json"
        raise MappingError(f"the value is not JSON: {exc}", kind) from None
    if not isinstance(decoded, dict):
        raise MappingError(f"the value is JSON {type(decoded).__name__}, not an object", "not_object")
    return decoded
