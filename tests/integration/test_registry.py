"""The local Schema Registry (Apicurio from Maven Central) through confluent-kafka's async client:
it registers Avro schemas, enforces BACKWARD compatibility, and keeps schemas across a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tribunal.localregistry import LocalRegistry


def _record(name: str, *fields: tuple[str, str]) -> Schema:
    body = {"type": "record", "name": name, "namespace": "tribunal.test",
            "fields": [{"name": field, "type": kind} for field, kind in fields]}  # fmt: skip
    return Schema(json.dumps(body), "AVRO")


def _name(schema: Schema) -> str:
    assert schema.schema_str is not None
    return str(json.loads(schema.schema_str)["name"])


def _subject() -> str:
    return f"test-{uuid.uuid4().hex[:12]}-value"


@pytest.fixture
async def client(schema_registry_url: str) -> AsyncIterator[AsyncSchemaRegistryClient]:
    async with AsyncSchemaRegistryClient({"url": schema_registry_url}) as registry_client:
        yield registry_client


async def test_an_avro_schema_is_registered_and_read_back_by_id(client: AsyncSchemaRegistryClient) -> None:
    """Registering returns an id; the same schema under the same subject gets the same id back."""
    subject, schema = _subject(), _record("Order", ("id", "long"), ("item", "string"))
    schema_id = await client.register_schema(subject, schema)
    assert await client.register_schema(subject, schema) == schema_id
    assert _name(await client.get_schema(schema_id)) == "Order"
    assert (await client.get_latest_version(subject)).schema_id == schema_id


async def test_backward_refuses_an_incompatible_schema_with_409(client: AsyncSchemaRegistryClient) -> None:
    """A new required field breaks BACKWARD (old records cannot be read); one with a default does not."""
    subject = _subject()
    await client.register_schema(subject, _record("Ticket", ("text", "string")))
    await client.set_compatibility(subject, "BACKWARD")
    with pytest.raises(SchemaRegistryError) as refused:
        await client.register_schema(subject, _record("Ticket", ("text", "string"), ("label", "string")))
    assert refused.value.http_status_code == 409
    compatible = Schema(
        json.dumps({"type": "record", "name": "Ticket", "namespace": "tribunal.test",
                    "fields": [{"name": "text", "type": "string"},
                               {"name": "label", "type": ["null", "string"], "default": None}]}),
        "AVRO",
    )  # fmt: skip
    assert await client.register_schema(subject, compatible) > 0


@pytest.mark.slow
async def test_a_restart_keeps_schemas_ids_and_compatibility(
    schema_registry_url: str, local_registry: LocalRegistry | None
) -> None:
    """Stopped and started on the same port (an outage), the registry still knows every subject,
    schema id and compatibility level: its H2 database is a file. New ids do not reuse old ones."""
    if local_registry is None:
        pytest.skip("SCHEMA_REGISTRY_URL names an external registry: this test stops and starts its own")
    subject, schema = _subject(), _record("Vote", ("item_id", "string"))
    async with AsyncSchemaRegistryClient({"url": schema_registry_url}) as before:
        schema_id = await before.register_schema(subject, schema)
        await before.set_compatibility(subject, "BACKWARD")

    # In a thread: the event loop (a tier under test) keeps running through the outage.
    assert await asyncio.to_thread(local_registry.stop)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{schema_registry_url}/subjects", timeout=2.0)
    assert await asyncio.to_thread(local_registry.start) == schema_registry_url

    # A fresh client: nothing answered from a client-side cache.
    async with AsyncSchemaRegistryClient({"url": schema_registry_url}) as after:
        assert subject in await after.get_subjects()
        assert _name(await after.get_schema(schema_id)) == "Vote"
        assert (await after.get_latest_version(subject)).schema_id == schema_id
        assert await after.get_compatibility(subject) == "BACKWARD"
        newer = await after.register_schema(_subject(), _record("Fresh", ("x", "int")))
        assert newer > schema_id
