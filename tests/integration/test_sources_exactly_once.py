"""10,000 records of another system's topic, written by librdkafka (confluent-kafka's producer:
random keys, its default `consistent_random` partitioner, not murmur2), through intake, workers,
aggregator, judge and sink as real OS processes; the intake and the aggregator are kill -9'd
mid-run and, for Avro, the Schema Registry is down for 12 s. Every record must come out on the
sink enriched exactly once, with its own key and headers."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from tests.integration.connect_kit import ANSWERS, create_source, read_sink
from tests.integration.kit import isolated_settings, make_topics, read_topic, start_tier
from tests.integration.pipeline_kit import WORKERS
from tribunal.core.settings import Settings
from tribunal.localregistry import LocalRegistry

COUNT = 10_000
TICKET_SCHEMA = {
    "type": "record",
    "name": "Ticket",
    "namespace": "com.example.helpdesk",
    "fields": [
        {"name": "ref", "type": "string"},
        {"name": "subject", "type": "string"},
        {"name": "body", "type": "string"},
        {"name": "priority", "type": ["null", "int"], "default": None},
        {
            "name": "script",
            "type": {
                "type": "record",
                "name": "Script",
                "fields": [{"name": n, "type": "string"} for n in (*WORKERS, "judge")],
            },
        },
    ],
}


TICKET_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Ticket",
    "type": "object",
    "properties": {
        "ref": {"type": "string"},
        "subject": {"type": "string"},
        "body": {"type": "string"},
        "priority": {"type": ["integer", "null"]},
        "script": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["ref", "subject", "body", "script"],
}


def ticket(n: int) -> tuple[dict[str, Any], str]:
    answers, label = ANSWERS[n % len(ANSWERS)]
    record = {
        "ref": f"T-{n:06d}",
        "subject": f"subject {n}",
        "body": f"body of ticket {n}",
        "priority": n % 4 or None,
        "script": dict(zip((*WORKERS, "judge"), answers, strict=True)),
    }
    return record, label


def produce_with_librdkafka(bootstrap: str, topic: str, fmt: str, registry_url: str | None) -> dict[bytes, str]:
    """Write COUNT tickets as a Java-less service would, paced at about 600 records/s so the
    kills land while records still arrive; the expected label per record key."""
    import time

    from confluent_kafka import Producer

    serialize = None
    client = None
    if fmt in ("avro", "jsonschema"):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        client = SchemaRegistryClient({"url": registry_url})
        if fmt == "avro":
            framed = AvroSerializer(client, json.dumps(TICKET_SCHEMA))
        else:
            framed = JSONSerializer(json.dumps(TICKET_JSON_SCHEMA), client)

        def serialize(record: dict[str, Any]) -> bytes:
            return bytes(framed(record, SerializationContext(topic, MessageField.VALUE)))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    expected: dict[bytes, str] = {}
    for n in range(COUNT):
        record, label = ticket(n)
        key = uuid.uuid4().hex.encode()
        if serialize is not None:
            value = serialize(record)
        elif fmt == "json":
            value = orjson.dumps(record)
        else:
            value = f"plain text of record {n}".encode()
        producer.produce(topic, value, key, headers=[("tenant", f"acme-{n % 5}".encode())])
        producer.poll(0)
        expected[key] = label
        if n % 60 == 59:
            time.sleep(0.1)
    assert producer.flush(60) == 0
    if client is not None:
        client.close()
    return expected


def source_for(fmt: str, topic: str) -> dict[str, Any]:
    if fmt == "text":
        return {"name": "src", "topic": topic, "format": "text", "task": "sentiment3"}
    script = [f"script.{n}" for n in (*WORKERS, "judge")]
    return {"name": "src", "topic": topic, "format": fmt, "id": "ref", "text": "{subject}\n\n{body}",
            "task": "sentiment3", "keep_fields": script, "keep_headers": ["tenant"]}  # fmt: skip


async def start_pipeline(settings: Settings, fmt: str) -> dict[str, asyncio.subprocess.Process]:
    scripted = fmt != "text"
    procs = {}
    for n, name in enumerate(WORKERS):
        spec = f"scripted:script.{name}" if scripted else f"hash:{n}"
        procs[name] = await start_tier(settings, "worker", "--name", name, "--classifier", spec, instance=name)
    judge = "scripted:script.judge" if scripted else "hash:judge"
    procs["judge"] = await start_tier(settings, "judge", "--classifier", judge, instance="judge")
    procs["aggregator"] = await start_tier(settings, "aggregator", instance="agg")
    procs["intake"] = await start_tier(settings, "intake", "--source", "src", instance="intake")
    procs["sink"] = await start_tier(settings, "sink", "--sink", "out", instance="sink")
    return procs


async def kill_and_restart(
    settings: Settings, procs: dict[str, asyncio.subprocess.Process], name: str, *args: str
) -> None:
    procs[name].send_signal(signal.SIGKILL)
    await procs[name].wait()
    procs[name] = await start_tier(settings, *args, instance=name)


async def sink_reaches(settings: Settings, topic: str, count: int) -> None:
    await read_topic(settings, topic, until=lambda rs: len(rs) >= count, timeout_s=240)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["avro", "json", "text", "jsonschema"])
async def test_every_source_record_enriched_exactly_once_through_kills_and_a_registry_outage(
    fmt: str, kafka_bootstrap: str, schema_registry_url: str, local_registry: LocalRegistry | None
) -> None:
    if fmt == "avro" and local_registry is None:
        pytest.skip("the registry outage needs the session's own registry (SCHEMA_REGISTRY_URL names another)")
    topic, out = f"helpdesk-{uuid.uuid4().hex[:8]}", f"triaged-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"policy": "criterion1", "deadline_ms": 600_000},
        runtime={"batch_size": 200},
        registry={"url": schema_registry_url, "retry_backoff_max_ms": 1_000},
        source=[source_for(fmt, topic)],
        sink=[{"name": "out", "source": "src", "topic": out, "field": "triage"}],
    )
    await create_source(settings, topic, partitions=3)
    await make_topics(settings)

    procs = await start_pipeline(settings, fmt)
    producing = asyncio.ensure_future(
        asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, topic, fmt, schema_registry_url)
    )
    try:
        await sink_reaches(settings, out, 1_500)
        await kill_and_restart(settings, procs, "intake", "intake", "--source", "src")
        await sink_reaches(settings, out, 3_000)
        await kill_and_restart(settings, procs, "aggregator", "aggregator")
        if fmt == "avro":
            assert local_registry is not None
            await sink_reaches(settings, out, 4_500)
            await asyncio.to_thread(local_registry.stop)
            # Both the intake (a new schema id is never cached by a restarted process) and the
            # sink wait; kill the intake meanwhile so its restart must ask the absent registry.
            await kill_and_restart(settings, procs, "intake", "intake", "--source", "src")
            await asyncio.sleep(12)  # the outage itself, not a wait for an event
            await asyncio.to_thread(local_registry.start)
        expected = await producing
        records = await read_sink(settings, out, COUNT, timeout_s=300)
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(proc.wait() for proc in procs.values()))

    records = await read_topic(settings, out)  # everything committed, duplicates included
    keys = Counter(record.key for record in records)
    assert not {k: c for k, c in keys.items() if c > 1}, "a source record enriched twice"
    assert set(keys) == set(expected), f"{len(set(expected) - set(keys))} source records missing on the sink"
    assert all(dict(record.headers)["tenant"].startswith(b"acme-") for record in records)
    if fmt == "jsonschema":
        assert all(record.value[:1] == b"\x00" for record in records), "framed by the enriched schema's id"
        decisions = {record.key: orjson.loads(record.value[5:])["triage"] for record in records}
    elif fmt != "avro":
        decisions = {record.key: orjson.loads(record.value)["triage"] for record in records}
    else:
        decisions = await avro_decisions(schema_registry_url, out, records)
    if fmt != "text":
        wrong = [k for k, d in decisions.items() if d["label"] != expected[k]]
        assert not wrong, f"{len(wrong)} labels differ from the scripted outcome"
    letters = await read_topic(settings, f"{topic}.dlq")
    assert letters == [], "nothing dead-lettered: an outage is waited for"


async def avro_decisions(
    url: str, topic: str, records: list[Any], field: str = "triage"
) -> dict[bytes, dict[str, Any]]:
    """The sink's Avro values as a reader of the enriched subject decodes them."""
    from confluent_kafka.schema_registry import AsyncSchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AsyncAvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    async with AsyncSchemaRegistryClient({"url": url}) as client:
        reader = await AsyncAvroDeserializer(client)
        context = SerializationContext(topic, MessageField.VALUE)
        decoded = {record.key: (await reader(record.value, context))[field] for record in records}
        latest = await client.get_latest_version(f"{topic}-value")
        assert field in (latest.schema.schema_str or "")
        assert await client.get_compatibility(f"{topic}-value") == "BACKWARD"
    return decoded
