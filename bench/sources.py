"""The source half of `tribunal bench pipeline --source json|avro`: items enter as records of a
user's topic (another system's shape: `{"ref", "subject", "body"}`, each on a random partition,
whatever its key) through the intake tier, and are followed on the sink's topic, so the figures
include both extra hops. For Avro a Schema Registry is needed: `registry.url`, or the project's
own local registry, started on a free port for the run and stopped after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tribunal.core import kafka
from tribunal.core.connect_settings import RegistrySettings
from tribunal.core.settings import Settings
from tribunal.schemas.messages import Item

__all__ = ["SourceFeed", "create_source_topic", "registry_for_bench", "source_settings"]

BENCH_SCHEMA = {
    "type": "record",
    "name": "BenchTicket",
    "namespace": "dev.tribunal.bench",
    "fields": [
        {"name": "ref", "type": "string"},
        {"name": "subject", "type": "string"},
        {"name": "body", "type": "string"},
    ],
}


def source_settings(settings: Settings, fmt: str, registry_url: str | None) -> Settings:
    """`settings` with a source `bench` on `<prefix>source` and a sink on `<prefix>sink`."""
    prefix = settings.topics.prefix
    source = {"name": "bench", "topic": f"{prefix}source", "format": fmt, "id": "ref",
              "text": "{subject}: {body}", "task": "sentiment"}  # fmt: skip
    sink = {"name": "bench-out", "source": "bench", "topic": f"{prefix}sink"}
    registry = settings.registry.model_dump() | ({"url": registry_url} if registry_url else {})
    data = settings.model_dump(exclude={"source", "sink", "registry"}, exclude_unset=True)
    return Settings.model_validate({**data, "source": [source], "sink": [sink], "registry": registry})


async def create_source_topic(settings: Settings) -> None:
    """The source topic, as big as the pipeline's (the user's topic: `topics create` skips it)."""
    from aiokafka.admin import NewTopic

    admin = kafka.admin_client(settings.kafka)
    await kafka.start(admin, settings.kafka)
    try:
        topics = settings.topics
        await admin.create_topics([NewTopic(settings.source[0].topic, topics.partitions, topics.replication_factor)])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def registry_for_bench(settings: Settings, fmt: str) -> AsyncIterator[str | None]:
    """The registry URL of the run: the configured one, or the local registry on a free port."""
    if fmt != "avro" or settings.registry.url is not None:
        yield settings.registry.url
        return
    from tribunal.localregistry import LocalRegistry

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="tribunal-bench-registry-") as home:
        # Its own data and PID file: never those of a registry `tribunal registry up` runs.
        shared = LocalRegistry(settings.home, RegistrySettings())
        local = await asyncio.to_thread(shared.private, Path(home), port)
        await asyncio.to_thread(local.start)
        try:
            yield local.url
        finally:
            await asyncio.to_thread(local.stop)


@dataclass
class SourceFeed:
    """How the bench publishes into a source and reads the sink (see the module doc)."""

    settings: Settings
    seed: int = 17
    _serializer: Any = None
    _client: Any = None
    _readers: dict[int, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return self.settings.source[0].format

    @property
    def sink_topic(self) -> str:
        return self.settings.sink[0].topic

    @property
    def tiers(self) -> dict[str, tuple[str, ...]]:
        return {"intake": ("intake", "--source", "bench"), "sink": ("sink", "--sink", "bench-out")}

    async def publish(self, settings: Settings, items: list[Item], rate: float | None) -> dict[str, float]:
        """Each item as a source record on a random partition (key: its id); produce times."""
        source = self.settings.source[0].topic
        chooser = random.Random(self.seed + len(items))
        producer = kafka.idempotent_producer(settings.kafka)
        await producer.start()
        produced: dict[str, float] = {}
        try:
            partitions = sorted(await producer.partitions_for(source))
            started = time.perf_counter()
            for n, item in enumerate(items):
                if rate and (delay := started + n / rate - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                value = await self._value({"ref": item.id, "subject": "bench", "body": item.text})
                produced[item.id] = time.time()
                await producer.send(
                    source, value, key=item.id.encode(), partition=chooser.choice(partitions),
                    headers=[("tenant", b"bench")],
                )  # fmt: skip
            await producer.flush()
        finally:
            await producer.stop()
        return produced

    async def _value(self, record: dict[str, str]) -> bytes:
        if self.format == "json":
            return orjson.dumps(record)
        if self._serializer is None:
            from confluent_kafka.schema_registry import AsyncSchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AsyncAvroSerializer

            self._client = AsyncSchemaRegistryClient(self.settings.registry.client_config())
            self._serializer = await AsyncAvroSerializer(self._client, orjson.dumps(BENCH_SCHEMA).decode())
        from confluent_kafka.serialization import MessageField, SerializationContext

        context = SerializationContext(self.settings.source[0].topic, MessageField.VALUE)
        value: bytes = await self._serializer(record, context)
        return value

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def outcome(self, value: bytes | None) -> tuple[str, str | None]:
        """(decided_by, "") of a sink record: the added field, read as a consumer of the sink
        would (Avro: by the enriched schema of its id, fetched once per id)."""
        if not value:
            return "", None
        if self.format == "json":
            return str(orjson.loads(value)["tribunal"]["decided_by"]), None
        import fastavro
        import httpx

        schema_id = int.from_bytes(value[1:5], "big")
        reader = self._readers.get(schema_id)
        if reader is None:
            url = f"{self.settings.registry.url}/schemas/ids/{schema_id}"
            schema = orjson.loads(httpx.get(url, timeout=10.0).json()["schema"])
            reader = self._readers[schema_id] = fastavro.parse_schema(schema)
        record: Any = fastavro.schemaless_reader(io.BytesIO(value[5:]), reader, None)
        return str(record["tribunal"]["decided_by"]), None
