"""A user's own topic through the whole pipeline on a real broker: records of another system's
shape, random keys and a partitioner that is not murmur2, mapped in by the intake and written
back enriched by the sink, each exactly once; hostile records one dead letter each."""

from __future__ import annotations

import base64
import uuid
from collections import Counter

import orjson
import pytest

from tests.integration.connect_kit import (
    SCRIPT_FIELDS,
    Foreign,
    create_source,
    json_ticket,
    pipeline,
    produce_foreign,
    read_sink,
    value,
)
from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tribunal.schemas.messages import DeadLetter


@pytest.mark.asyncio
async def test_json_source_with_field_mapping_enriched_on_the_sink_exactly_once(kafka_bootstrap: str) -> None:
    topic, out = f"tickets-{uuid.uuid4().hex[:8]}", f"triaged-{uuid.uuid4().hex[:8]}"
    source = {
        "name": "tickets",
        "topic": topic,
        "format": "json",
        "id": "ticket.ref",
        "text": "{ticket.subject}\n\n{ticket.body}",
        "task": "sentiment3",
        "keep_fields": [*SCRIPT_FIELDS, "priority"],
        "keep_headers": ["tenant"],
    }
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"policy": "criterion1"},
        source=[source],
        sink=[{"name": "triaged", "source": "tickets", "topic": out, "field": "triage", "cloudevents": True}],
    )
    await create_source(settings, topic)
    await make_topics(settings)
    count = 600
    records: list[Foreign] = []
    expected = {}
    for n in range(count):
        ticket, label = json_ticket(n)
        headers = [("tenant", f"acme-{n % 3}".encode()), ("traceparent", b"00-" + bytes(f"{n:032x}", "ascii"))]
        records.append((uuid.uuid4().bytes, value(ticket), headers))
        expected[ticket["ticket"]["ref"]] = label
    hostile: list[Foreign] = [
        (b"k-missing", value({"ticket": {"subject": "no ref", "body": "x"}}), []),
        (b"k-type", value({**json_ticket(0)[0], "ticket": {"ref": ["T-list"], "subject": "s", "body": "b"}}), []),
        (b"k-utf8", b'{"ticket": {"ref": "T-utf8", "subject": "\xff\xfe", "body": "x"}}', []),
        (b"k-big", b'{"pad": "' + b"x" * 2_000_000 + b'"}', []),
        (b"k-tombstone", None, []),
        (b"k-array", b"[1, 2, 3]", [("tenant", b"acme-0")]),
    ]
    await produce_foreign(settings, topic, records[: count // 2] + hostile + records[count // 2 :])

    async with running(*pipeline(settings, sources=["tickets"], sinks=["triaged"])):
        enriched = await read_sink(settings, out, count)
        letters = await read_topic(settings, f"{topic}.dlq", DeadLetter, until=lambda rs: len(rs) >= len(hostile))

    sent = {record[1]: record for record in records}
    seen: Counter[str] = Counter()
    for record in enriched:
        body = orjson.loads(record.value)
        triage = body.pop("triage")
        ref = body["ticket"]["ref"]
        seen[ref] += 1
        original = sent[orjson.dumps(body)]
        assert record.key == original[0], "the original key"
        assert [(k, v) for k, v in record.headers if not k.startswith("ce_") and k != "content-type"] == original[2]
        assert triage["label"] == expected[ref] and triage["item_id"] == ref
        assert dict(record.headers)["ce_id"] == ref.encode()
    assert len(seen) == count and set(seen.values()) == {1}, "every record enriched exactly once"
    kinds = Counter(letter.error_kind for letter in letters)
    assert kinds == Counter(
        {"missing_field": 1, "wrong_type": 1, "not_utf8": 1, "oversize": 1, "tombstone": 1, "not_object": 1}
    ), kinds
    array = next(letter for letter in letters if letter.error_kind == "not_object")
    assert base64.b64decode(array.value_b64 or "") == b"[1, 2, 3]"
    assert array.headers == (("tenant", base64.b64encode(b"acme-0").decode()),)


@pytest.mark.asyncio
async def test_text_source_keyed_by_record_key(kafka_bootstrap: str) -> None:
    topic, out = f"lines-{uuid.uuid4().hex[:8]}", f"lines-out-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(
        kafka_bootstrap,
        judge={"classifier": "hash:judge"},
        source=[{"name": "lines", "topic": topic, "format": "text", "id": "@key", "task": "sentiment3"}],
        sink=[{"name": "lines-out", "source": "lines", "topic": out}],
    )
    await create_source(settings, topic)
    await make_topics(settings)
    count = 300
    records: list[Foreign] = [(f"line-{n}".encode(), f"a plain text line {n}".encode(), []) for n in range(count)]
    records.append((None, b"no key here", []))  # @key needs a key: one dead letter
    await produce_foreign(settings, topic, records)
    mains = pipeline(settings, sources=["lines"], sinks=["lines-out"])
    from tests.integration.pipeline_kit import worker_main

    mains[:3] = [worker_main(settings, w, f"hash:{n}") for n, w in enumerate(("w1", "w2", "w3"))]
    mains[4] = lambda stop: __import__("tribunal.consumers.judge", fromlist=["run"]).run(settings, stop)
    async with running(*mains):
        enriched = await read_sink(settings, out, count)
        letters = await read_topic(settings, f"{topic}.dlq", DeadLetter, until=lambda rs: len(rs) >= 1)
    keys = Counter(record.key for record in enriched)
    assert len(keys) == count and set(keys.values()) == {1}
    for record in enriched:
        body = orjson.loads(record.value)
        assert body["text"] == f"a plain text line {record.key.decode().split('-')[1]}"
        assert body["tribunal"]["item_id"] == record.key.decode()
        assert body["tribunal"]["label"] in {"positive", "negative", "neutral"}
    assert [letter.error_kind for letter in letters] == ["missing_key"]


@pytest.mark.asyncio
async def test_source_check_maps_the_first_records_and_says_why_not(kafka_bootstrap: str) -> None:
    """`tribunal source check`: the intake's own mapping over the first records, nothing published."""
    from tribunal.cli.source import check

    topic = f"peek-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(
        kafka_bootstrap,
        source=[{"name": "peek", "topic": topic, "id": "ticket.ref", "text": "ticket.body", "task": "sentiment3"}],
    )
    await create_source(settings, topic, partitions=2)
    await make_topics(settings)
    good: list[Foreign] = [(None, value(json_ticket(n)[0]), []) for n in range(4)]
    await produce_foreign(settings, topic, [*good, (None, b"[]", []), (None, value({"ticket": {"ref": "x"}}), [])])
    report = await check(settings, "peek", limit=20)
    assert (report["read"], report["mapped"], report["refused"]) == (6, 4, 2)
    assert sorted(r["kind"] for r in report["records"] if not r["ok"]) == ["missing_field", "not_object"]
    assert {r["id"] for r in report["records"] if r["ok"]} == {f"T-{n:06d}" for n in range(4)}
    limited = await check(settings, "peek", limit=3)
    assert limited["read"] == 3 and {r["partition"] for r in limited["records"]} == {0, 1}, "both partitions sampled"
    assert await read_topic(settings, settings.topics.items_topic) == [], "nothing published"


@pytest.mark.asyncio
async def test_a_fixed_dead_letter_replayed_reaches_the_sink(kafka_bootstrap: str) -> None:
    """A record the mapping refused, corrected and replayed with `dlq replay --fixed`, comes out
    enriched on the sink with its original key and headers, once."""
    from tribunal.producers.dlq import read_letters, replay_letters

    topic, out = f"fixme-{uuid.uuid4().hex[:8]}", f"fixed-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"policy": "criterion1"},
        source=[
            {
                "name": "fixme",
                "topic": topic,
                "id": "ticket.ref",
                "text": "ticket.body",
                "task": "sentiment3",
                "keep_fields": list(SCRIPT_FIELDS),
            }
        ],
        sink=[{"name": "fixed", "source": "fixme", "topic": out}],
    )
    await create_source(settings, topic)
    await make_topics(settings)
    ticket, label = json_ticket(1)
    broken = {**ticket, "ticket": {"ref": "T-broken", "subject": "s"}}  # no body
    await produce_foreign(settings, topic, [(b"the-key", value(broken), [("tenant", b"acme")])])
    async with running(*pipeline(settings, sources=["fixme"], sinks=["fixed"])):
        letters = await read_topic(settings, f"{topic}.dlq", DeadLetter, until=lambda rs: len(rs) >= 1)
        assert letters[0].error_kind == "missing_field"
        (letter,) = await read_letters(settings, f"{topic}.dlq")
        repaired = {**broken, "ticket": {**broken["ticket"], "body": "now it has a body"}}
        report = await replay_letters(settings, f"{topic}.dlq", {letter.id: value(repaired)})
        assert report.replayed == 1
        (record,) = await read_sink(settings, out, 1)
    assert record.key == b"the-key" and list(record.headers) == [("tenant", b"acme")]
    assert orjson.loads(record.value)["tribunal"]["label"] == label


async def test_hostile_avro_records_are_one_dead_letter_each(kafka_bootstrap: str, schema_registry_url: str) -> None:
    """On the real registry: an unknown schema id, a truncated body, bytes that are not the wire
    format, and a schema that is not Avro are dead-lettered once each; good records still flow."""
    from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
    from confluent_kafka.schema_registry.avro import AsyncAvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic, out = f"avro-bad-{uuid.uuid4().hex[:8]}", f"avro-out-{uuid.uuid4().hex[:8]}"
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"policy": "criterion1"},
        registry={"url": schema_registry_url},
        source=[
            {
                "name": "bad",
                "topic": topic,
                "format": "avro",
                "id": "ref",
                "text": "body",
                "task": "sentiment3",
                "keep_fields": list(SCRIPT_FIELDS),
            }
        ],
        sink=[{"name": "bad-out", "source": "bad", "topic": out}],
    )
    await create_source(settings, topic)
    await make_topics(settings)
    script = {
        "type": "record",
        "name": "Script",
        "fields": [{"name": n, "type": "string"} for n in ("w1", "w2", "w3", "judge")],
    }
    fields = [{"name": "ref", "type": "string"}, {"name": "body", "type": "string"}, {"name": "script", "type": script}]
    schema = {"type": "record", "name": "Bad", "namespace": "t", "fields": fields}
    async with AsyncSchemaRegistryClient({"url": schema_registry_url}) as client:
        serializer = await AsyncAvroSerializer(client, orjson.dumps(schema).decode())
        context = SerializationContext(topic, MessageField.VALUE)
        good = [await serializer({"ref": f"A-{n}", "body": f"text {n}", "script": json_ticket(n)[0]["script"]}, context)
                for n in range(30)]  # fmt: skip
        json_id = await client.register_schema(
            f"{topic}-json", Schema('{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}', "JSON")
        )
    unknown = b"\x00" + (2_000_000_000).to_bytes(4, "big") + good[0][5:]
    hostile: list[Foreign] = [
        (b"k-unknown", unknown, []),
        (b"k-truncated", good[0][:-4], []),
        (b"k-framing", b"\x07 not the wire format", []),
        (b"k-json-schema", b"\x00" + json_id.to_bytes(4, "big") + b"{}", []),
    ]
    await produce_foreign(
        settings, topic, [(None, v, []) for v in good[:15]] + hostile + [(None, v, []) for v in good[15:]]
    )
    async with running(*pipeline(settings, sources=["bad"], sinks=["bad-out"])):
        await read_sink(settings, out, len(good))
        letters = await read_topic(settings, f"{topic}.dlq", DeadLetter, until=lambda rs: len(rs) >= len(hostile))
    kinds = {base64.b64decode(letter.key_b64 or ""): letter.error_kind for letter in letters}
    assert kinds == {
        b"k-unknown": "unknown_schema",
        b"k-truncated": "corrupt_avro",
        b"k-framing": "bad_framing",
        b"k-json-schema": "wrong_schema_type",
    }, kinds
