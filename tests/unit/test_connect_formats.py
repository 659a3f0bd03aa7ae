"""Source values decoded by format, and decided records enriched for the sink
(tribunal/connect/formats.py, enrich.py, registry.py), against confluent-kafka's own in-memory
registry client (the real registry is in tests/integration)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryError
from confluent_kafka.schema_registry._async.mock_schema_registry_client import AsyncMockSchemaRegistryClient
from confluent_kafka.schema_registry.avro import AsyncAvroDeserializer, AsyncAvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tribunal.connect.enrich import Enricher
from tribunal.connect.formats import SourceDecoder
from tribunal.connect.mapping import MappingError
from tribunal.connect.registry import SchemaRegistry, avro_with_field
from tribunal.core import metrics
from tribunal.core.connect_settings import RegistrySettings, SinkSettings
from tribunal.core.errors import ConfigError
from tribunal.schemas.messages import SourceRecord, Verdict

TICKET_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Ticket",
        "namespace": "helpdesk",
        "fields": [
            {"name": "ref", "type": "string"},
            {"name": "subject", "type": "string"},
            {"name": "priority", "type": ["null", "int"], "default": None},
        ],
    }
)
TICKET = {"ref": "T-1", "subject": "my card was declined", "priority": 2}


class MockRegistryClient(AsyncMockSchemaRegistryClient):
    """confluent-kafka's in-memory client, plus the per-subject compatibility it leaves out."""

    def __init__(self) -> None:
        super().__init__({"url": "mock://tests"})
        self.levels: dict[str, str] = {}

    async def get_compatibility(self, subject_name: str | None = None) -> str:
        if subject_name is None or subject_name not in self.levels:
            raise SchemaRegistryError(404, 40401, f"subject {subject_name} has no compatibility level")
        return self.levels[subject_name]

    async def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> str:
        assert subject_name is not None and level is not None
        self.levels[subject_name] = level
        return level


def registry() -> SchemaRegistry:
    reg = SchemaRegistry(RegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7"))
    reg.client = MockRegistryClient()
    return reg


async def avro_value(reg: SchemaRegistry, record: dict[str, Any] = TICKET, headers: list[Any] | None = None) -> bytes:
    serializer = await AsyncAvroSerializer(reg.client, TICKET_SCHEMA)
    value: bytes = await serializer(record, SerializationContext("tickets", MessageField.VALUE, headers))
    return value


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fmt", "value", "kind"),
    [
        ("json", None, "tombstone"),
        ("json", b"", "empty"),
        ("json", b"x" * 2_000, "oversize"),
        ("json", b"{not json", "not_json"),
        ("json", b'{"a": "\xff"}', "not_utf8"),
        ("json", b"[1]", "not_object"),
        ("text", b"\xff\xfe", "not_utf8"),
        ("avro", b"\x07garbage", "bad_framing"),
        ("avro", b"\x00", "bad_framing"),
        ("avro", b"\x00\x00\x00\x00\x63body", "unknown_schema"),
    ],
)
async def test_bad_values_are_poison_with_their_kind(fmt: Any, value: bytes | None, kind: str) -> None:
    decoder = SourceDecoder(fmt, 1_024, registry())
    with pytest.raises(MappingError) as caught:
        await decoder.decode(value)
    assert caught.value.kind == kind


@pytest.mark.asyncio
async def test_avro_decodes_by_the_writer_schema_and_refuses_truncated_bodies() -> None:
    reg = registry()
    value = await avro_value(reg)
    decoder = SourceDecoder("avro", 10_000, reg)
    assert await decoder.decode(value) == TICKET
    for cut in (value[:-3], value + b"\x00"):
        with pytest.raises(MappingError) as caught:
            await decoder.decode(cut)
        assert caught.value.kind == "corrupt_avro"


@pytest.mark.asyncio
async def test_a_registry_that_does_not_answer_is_waited_for_not_blamed() -> None:
    """A closed port: the decode keeps retrying (no MappingError), and the gauge says so."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reg = SchemaRegistry(RegistrySettings(url=f"http://127.0.0.1:{port}", retry_backoff_ms=10, timeout_s=0.2))
    decoder = SourceDecoder("avro", 10_000, reg)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(decoder.decode(b"\x00\x00\x00\x00\x01body"), 0.6)
    assert metrics.REGISTRY_UP._value.get() == 0
    await reg.close()


def verdict(source: SourceRecord) -> Verdict:
    return Verdict(
        item_id="T-1", task="intent", label="card_declined", decided_by="judge", confidence=0.9,
        policy="target", policy_version=4, item_produced_at=1.0, decided_at=1_800_000_000.0, source=source,
    )  # fmt: skip


def source_record(value: bytes, headers: list[tuple[str, bytes]] = ()) -> SourceRecord:  # type: ignore[assignment]
    return SourceRecord(
        name="tickets", topic="tickets", partition=1, offset=9, timestamp_ms=5, key_b64=base64.b64encode(b"k").decode(),
        value_b64=base64.b64encode(value).decode(),
        headers=tuple((n, base64.b64encode(v).decode()) for n, v in headers),
    )  # fmt: skip


@pytest.mark.asyncio
async def test_json_and_text_sinks_add_one_field_and_keep_key_and_headers() -> None:
    sink = SinkSettings(name="out", source="tickets", topic="triaged", field="triage", cloudevents=True)
    out = await Enricher(sink, "json", None).record(verdict(source_record(b'{"ref": "T-1"}', [("tenant", b"a")])))
    body = orjson.loads(out.value or b"")
    assert body["ref"] == "T-1" and body["triage"]["label"] == "card_declined" and body["triage"]["rule_version"] == 4
    assert out.key == b"k" and out.topic == "triaged"
    headers = dict(out.headers or [])
    assert headers["tenant"] == b"a" and headers["ce_id"] == b"T-1" and headers["ce_specversion"] == b"1.0"
    assert headers["ce_time"] == b"2027-01-15T08:00:00Z"
    text = await Enricher(sink, "text", None).record(verdict(source_record(b"plain words")))
    assert orjson.loads(text.value or b"")["text"] == "plain words"


@pytest.mark.asyncio
async def test_avro_sink_registers_the_enriched_schema_and_readers_see_the_decision() -> None:
    reg = registry()
    value = await avro_value(reg, headers=[])
    sink = SinkSettings(name="out", source="tickets", topic="triaged")
    out = await Enricher(sink, "avro", reg).record(verdict(source_record(value, [("tenant", b"a")])))
    assert out.headers == [("tenant", b"a")]
    reader = await AsyncAvroDeserializer(reg.client)
    enriched = await reader(out.value, SerializationContext("triaged", MessageField.VALUE, []))
    assert enriched["ref"] == "T-1" and enriched["tribunal"]["label"] == "card_declined"
    assert await reg.client.get_compatibility("triaged-value") == "BACKWARD"


def test_the_added_avro_field_is_nullable_and_never_clobbers_one() -> None:
    enriched = json.loads(avro_with_field(TICKET_SCHEMA, "triage"))
    added = enriched["fields"][-1]
    assert added["name"] == "triage" and added["default"] is None and added["type"][0] == "null"
    with pytest.raises(ConfigError, match="already have a field"):
        avro_with_field(TICKET_SCHEMA, "subject")
    with pytest.raises(ConfigError, match="not a record"):
        avro_with_field('"string"', "triage")


TICKET_JSON_SCHEMA = json.dumps(
    {"type": "object", "properties": {"ref": {"type": "string"}, "subject": {"type": "string"}}, "required": ["ref"]}
)


@pytest.mark.asyncio
async def test_json_schema_values_decode_and_enrich_behind_their_own_frame() -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.common.serde import SchemaId

    reg = registry()
    writer = await reg.client.register_schema("tickets-value", Schema(TICKET_JSON_SCHEMA, "JSON"))
    avro_id = await reg.client.register_schema("other-value", Schema(TICKET_SCHEMA, "AVRO"))
    frame = SchemaId("JSON", writer).id_to_bytes()
    value = frame + b'{"ref": "T-1", "subject": "card"}'
    decoder = SourceDecoder("jsonschema", 10_000, reg)
    assert await decoder.decode(value) == {"ref": "T-1", "subject": "card"}
    for bad, kind in [
        (frame + b"[1]", "not_object"),
        (SchemaId("JSON", avro_id).id_to_bytes() + b"{}", "wrong_schema_type"),
        (b"\x00\x00\x00\x03\xe7{}", "unknown_schema"),
    ]:
        with pytest.raises(MappingError) as caught:
            await decoder.decode(bad)
        assert caught.value.kind == kind

    sink = SinkSettings(name="out", source="tickets", topic="triaged")
    out = await Enricher(sink, "jsonschema", reg).record(verdict(source_record(value)))
    enriched_id = int.from_bytes((out.value or b"")[1:5], "big")
    assert enriched_id != writer and (out.value or b"")[:1] == b"\x00"
    body = orjson.loads((out.value or b"")[5:])
    assert body["ref"] == "T-1" and body["tribunal"]["label"] == "card_declined"
    enriched = json.loads((await reg.client.get_schema(enriched_id)).schema_str or "")
    assert "tribunal" in enriched["properties"] and enriched["required"] == ["ref"]
