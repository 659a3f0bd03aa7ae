"""The Schema Registry, through confluent-kafka's async client (Confluent REST API: Confluent,
Apicurio's `ccompat`, Karapace, Redpanda).

What a tier needs from it, with the one distinction that matters for exactly-once: a registry
that does not answer (connection refused, timeout, 5xx, 429) is *waited for*, retrying with
backoff, and never blamed on a record; a registry that answers "no such schema" makes the
record poison (`MappingError(unknown_schema)`: one dead letter). Credentials it refuses are a
`ConfigError` (fatal: every record would fail). Schemas are cached by id, parsed once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

from tribunal.connect.mapping import MappingError
from tribunal.core import metrics
from tribunal.core.connect_settings import RegistrySettings
from tribunal.core.errors import ConfigError
from tribunal.core.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["SchemaRegistry", "avro_with_field", "json_schema_with_field"]

log = get_logger("tribunal.registry")


class SchemaRegistry:
    """A registry client that waits out outages (see the module doc)."""

    def __init__(self, settings: RegistrySettings) -> None:
        from confluent_kafka.schema_registry import AsyncSchemaRegistryClient

        self._settings = settings
        # Our backoff loop is the only one: the client's own retries would hide an outage's start.
        self.client = AsyncSchemaRegistryClient({**settings.client_config(), "max.retries": 0})
        self._avro: dict[int | str, Any] = {}  # schema id or GUID -> fastavro-parsed writer schema
        self._json: dict[int | str, str] = {}  # schema id or GUID -> JSON Schema text
        self._registered: dict[tuple[str, str], int] = {}

    async def avro_schema(self, schema_id: int | str) -> Any:
        """The parsed Avro writer schema with this id or GUID (`MappingError` if the registry has
        none)."""
        parsed = self._avro.get(schema_id)
        if parsed is None:
            import fastavro

            schema = await self._schema(schema_id)
            if schema.schema_type not in (None, "AVRO"):
                raise MappingError(f"schema {schema_id} is {schema.schema_type}, not Avro", "wrong_schema_type")
            parsed = self._avro[schema_id] = fastavro.parse_schema(orjson.loads(schema.schema_str))
        return parsed

    async def json_schema(self, schema_id: int | str) -> str:
        """The text of the JSON Schema with this id (`MappingError` if the registry has none, or
        if it is of another type)."""
        text = self._json.get(schema_id)
        if text is None:
            schema = await self._schema(schema_id)
            if schema.schema_type != "JSON":
                raise MappingError(f"schema {schema_id} is {schema.schema_type}, not JSON Schema", "wrong_schema_type")
            text = self._json[schema_id] = str(schema.schema_str)
        return text

    async def schema_text(self, schema_id: int | str) -> str:
        return str((await self._schema(schema_id)).schema_str)

    async def _schema(self, schema_id: int | str) -> Any:
        if isinstance(schema_id, int):
            return await self._call(f"schema {schema_id}", lambda: self.client.get_schema(schema_id), schema_id)
        return await self._call(f"schema {schema_id}", lambda: self.client.get_schema_by_guid(schema_id), schema_id)

    async def register_backward(self, subject: str, schema_str: str, schema_type: str = "AVRO") -> int:
        """Register `schema_str` under `subject` (BACKWARD compatibility for a new subject); its id.
        A schema the subject refuses as incompatible is a `ConfigError`: every record would fail."""
        cached = self._registered.get((subject, schema_str))
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        async def register() -> int:
            try:
                await self.client.get_compatibility(subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    raise
                await self.client.set_compatibility(subject, "BACKWARD")
            return int(await self.client.register_schema(subject, Schema(schema_str, schema_type)))

        try:
            schema_id: int = await self._call(f"subject {subject}", register, None)
        except SchemaRegistryError as exc:
            raise ConfigError(
                f"the registry refused the enriched schema for subject {subject} ({exc}); "
                "its existing versions are not BACKWARD compatible with it: name another sink topic"
            ) from exc
        self._registered[(subject, schema_str)] = schema_id
        return schema_id

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]], schema_id: int | str | None) -> Any:
        """`call()`, retried with backoff while the registry does not answer."""
        from confluent_kafka.schema_registry import SchemaRegistryError

        delay = self._settings.retry_backoff_ms / 1000.0
        down_since: float | None = None
        while True:
            try:
                result = await call()
            except SchemaRegistryError as exc:
                status = exc.http_status_code
                if status == 404 and schema_id is not None:
                    raise MappingError(f"the registry has no schema with id {schema_id}", "unknown_schema") from None
                if status in (401, 403):
                    raise ConfigError(f"the registry refused our credentials for {what} (HTTP {status})") from None
                if status < 500 and status != 429:
                    raise
                problem = f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - transport errors of httpx/ssl/OS: the registry is away
                problem = type(exc).__name__
            else:
                if down_since is not None:
                    log.info("registry_back", after_s=round(time.monotonic() - down_since, 1))
                    metrics.REGISTRY_UP.set(1)
                return result
            if down_since is None:
                down_since = time.monotonic()
                log.warning("registry_unavailable", what=what, problem=problem)
                metrics.REGISTRY_UP.set(0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.retry_backoff_max_ms / 1000.0)

    async def close(self) -> None:
        await self.client.__aexit__()  # type: ignore[no-untyped-call]  # closes its HTTP session


def avro_with_field(writer_schema: str, field: str) -> str:
    """The writer schema with one more field, `field`: the decision, nullable with default null
    (so the enriched schema reads old records: BACKWARD compatible). `ConfigError` if the record
    already has such a field."""
    schema = orjson.loads(writer_schema)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ConfigError("the source's Avro schema is not a record: the sink can add a field only to a record")
    if any(f.get("name") == field for f in schema.get("fields", [])):
        raise ConfigError(f"the source's records already have a field {field!r}: set the sink's field to another name")
    decision = {
        "type": "record",
        "name": "TribunalDecision",
        "namespace": "dev.tribunal",
        "fields": [
            {"name": "label", "type": "string"},
            {"name": "confidence", "type": "double"},
            {"name": "decided_by", "type": "string"},
            {"name": "policy", "type": "string"},
            {"name": "rule_version", "type": "long"},
            {"name": "item_id", "type": "string"},
            {"name": "decided_at", "type": "double"},
        ],
    }
    fields = [*schema.get("fields", []), {"name": field, "type": ["null", decision], "default": None}]
    return orjson.dumps({**schema, "fields": fields}).decode()


def json_schema_with_field(writer_schema: str, field: str) -> str:
    """The writer's JSON Schema with one more, optional property `field` (the decision): BACKWARD
    compatible, since no record of the writer is refused by it. `ConfigError` if the schema is
    not an object schema or already names such a property."""
    schema = orjson.loads(writer_schema)
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ConfigError("the source's JSON Schema is not an object schema: the sink can add a property only to one")
    properties = dict(schema.get("properties", {}))
    if field in properties:
        raise ConfigError(
            f"the source's records already have a property {field!r}: set the sink's field to another name"
        )
    properties[field] = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "confidence": {"type": "number"},
            "decided_by": {"type": "string"},
            "policy": {"type": "string"},
            "rule_version": {"type": "integer"},
            "item_id": {"type": "string"},
            "decided_at": {"type": "number"},
        },
    }
    return orjson.dumps({**schema, "properties": properties}).decode()
