"""A decided record -> the sink's record: the source record as it came (key, headers, value in
the source's format) with one field added that holds the decision.

- `json`: the object with `<field>: {label, confidence, decided_by, policy, rule_version,
  item_id, decided_at}`;
- `text`: `{"text": <the value>, <field>: ...}` as JSON (a text value has no field to add);
- `jsonschema`: the object with the field, behind the frame of the writer's JSON Schema plus an
  optional `<field>` property, registered under `<topic>-value` (BACKWARD);
- `avro`: the writer schema plus a nullable `<field>` record, registered under `<topic>-value`
  with BACKWARD compatibility through confluent-kafka's registry client; the value is the
  enriched record written by fastavro behind confluent-kafka's own frame of that schema id
  (what its serializer does, without its per-record subject and rule machinery: half the CPU).
  The `__value_schema_id` header of the original (if any) is dropped: the new value names its
  own schema in its prefix.

With `cloudevents`, the CloudEvents Kafka binding's binary-mode headers are added (`ce_id` the
item id, `ce_source`, `ce_type`, `ce_time`, `ce_subject`, `content-type`).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from typing import Any

import orjson

from tribunal.connect.formats import SCHEMA_ID_HEADER, framed_body
from tribunal.connect.registry import SchemaRegistry, avro_with_field, json_schema_with_field
from tribunal.core.batches import Output
from tribunal.core.connect_settings import REGISTRY_FORMATS, SinkSettings, SourceFormat
from tribunal.schemas.messages import SourceRecord, Verdict

__all__ = ["CE_TYPE", "Enricher", "decision"]

CE_TYPE = "dev.tribunal.label.v1"
_SCHEMA_ID_HEADERS = frozenset({SCHEMA_ID_HEADER})
_CONTENT_TYPES = {"json": "application/json", "text": "application/json", "avro": "application/avro",
                  "jsonschema": "application/json"}  # fmt: skip


def decision(verdict: Verdict) -> dict[str, Any]:
    """What the added field holds."""
    return {
        "label": verdict.label,
        "confidence": verdict.confidence,
        "decided_by": verdict.decided_by.value,
        "policy": verdict.policy,
        "rule_version": verdict.policy_version,
        "item_id": verdict.item_id,
        "decided_at": verdict.decided_at,
    }


class Enricher:
    """Builds one sink's records (see the module doc)."""

    def __init__(self, sink: SinkSettings, source_format: SourceFormat, registry: SchemaRegistry | None) -> None:
        if source_format in REGISTRY_FORMATS and registry is None:
            raise ValueError(f"a {source_format} sink needs a schema registry")
        self._sink = sink
        self._format = source_format
        self._registry = registry
        # writer schema id -> (the enriched schema's frame, its fastavro-parsed form)
        self._enriched: dict[int | str, tuple[bytes, Any]] = {}
        self._frames: dict[int | str, bytes] = {}  # JSON Schema: writer schema id -> enriched frame

    async def record(self, verdict: Verdict) -> Output:
        source = verdict.source
        assert source is not None
        value = base64.b64decode(source.value_b64)
        headers = _headers(source)
        added = decision(verdict)
        if self._format == "json":
            enriched = self._with_field(value, added)
        elif self._format == "text":
            enriched = orjson.dumps({"text": value.decode("utf-8"), self._sink.field: added})
        else:
            schema_key, body = framed_body(value, headers)
            if self._format == "jsonschema":
                enriched = await self._json_schema(schema_key, body, added)
            else:
                enriched = await self._avro(schema_key, body, added)
            headers = [(name, raw) for name, raw in headers if name not in _SCHEMA_ID_HEADERS]
        if self._sink.cloudevents:
            headers += _cloudevent_headers(self._sink, verdict, _CONTENT_TYPES[self._format])
        key = None if source.key_b64 is None else base64.b64decode(source.key_b64)
        return Output(self._sink.topic, enriched, key, headers=headers)

    def _with_field(self, json_object: bytes, added: dict[str, Any]) -> bytes:
        record = orjson.loads(json_object)
        record[self._sink.field] = added
        return orjson.dumps(record)

    async def _json_schema(self, schema_key: int | str, body: io.BytesIO, added: dict[str, Any]) -> bytes:
        assert self._registry is not None
        frame = self._frames.get(schema_key)
        if frame is None:
            frame = self._frames[schema_key] = await _json_schema_frame(self._registry, self._sink, schema_key)
        return frame + self._with_field(body.read(), added)

    async def _avro(self, schema_key: int | str, body: io.BytesIO, added: dict[str, Any]) -> bytes:
        import fastavro

        assert self._registry is not None
        enriched = self._enriched.get(schema_key)
        if enriched is None:
            from confluent_kafka.schema_registry.common.serde import SchemaId

            schema = avro_with_field(await self._registry.schema_text(schema_key), self._sink.field)
            schema_id = await self._registry.register_backward(f"{self._sink.topic}-value", schema)
            frame = SchemaId("AVRO", schema_id).id_to_bytes()
            enriched = self._enriched[schema_key] = (frame, fastavro.parse_schema(orjson.loads(schema)))
        record: Any = fastavro.schemaless_reader(body, await self._registry.avro_schema(schema_key), None)
        record[self._sink.field] = added
        out = io.BytesIO()
        out.write(enriched[0])
        fastavro.schemaless_writer(out, enriched[1], record)
        return out.getvalue()


async def _json_schema_frame(registry: SchemaRegistry, sink: SinkSettings, schema_key: int | str) -> bytes:
    from confluent_kafka.schema_registry.common.serde import SchemaId

    schema = json_schema_with_field(await registry.json_schema(schema_key), sink.field)
    schema_id = await registry.register_backward(f"{sink.topic}-value", schema, "JSON")
    return bytes(SchemaId("JSON", schema_id).id_to_bytes())


def _headers(source: SourceRecord) -> list[tuple[str, bytes]]:
    return [(name, base64.b64decode(raw)) for name, raw in source.headers]


def _cloudevent_headers(sink: SinkSettings, verdict: Verdict, content_type: str) -> list[tuple[str, bytes]]:
    decided = dt.datetime.fromtimestamp(verdict.decided_at, tz=dt.UTC).isoformat().replace("+00:00", "Z")
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", verdict.item_id.encode()),
        ("ce_source", f"tribunal/{sink.name}".encode()),
        ("ce_type", CE_TYPE.encode()),
        ("ce_time", decided.encode()),
        ("ce_subject", verdict.item_id.encode()),
        ("content-type", content_type.encode()),
    ]
