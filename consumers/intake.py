"""Intake tier: a user's topic in, Tribunal's `Item`s out, exactly once.

Reads one `[[source]]` topic (any key, any partitioner, the owner's own record shape), decodes
each record by the source's format (`tribunal.connect.formats`), maps it to an item
(`tribunal.connect.mapping`) and writes it to `items`, keyed by its id (so on the partition the
aggregator expects), in the transaction that commits the source offsets. The item carries its
source record (coordinates, key, headers, original value: `SourceRecord`) so the sink can write
it back enriched.

A record that cannot be mapped becomes one dead letter on `<source topic>.dlq` with the reason,
its original bytes and headers, and the tier goes on. A Schema Registry that does not answer is
waited for (nothing is dead-lettered for it): the batch is held until it comes back.
"""

from __future__ import annotations

import asyncio
from base64 import b64encode
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel

from tribunal.connect.formats import SourceDecoder
from tribunal.connect.mapping import MappedItem, MappingError, SourceMapping
from tribunal.connect.registry import SchemaRegistry
from tribunal.core.batches import Output
from tribunal.core.connect_settings import REGISTRY_FORMATS, SourceSettings
from tribunal.core.intake import headers_b64
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.process import tune_gc
from tribunal.core.records import DeadLetterSource, RawValue, Record, dead_letter
from tribunal.core.runtime import Processor, serve
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeContext, DecodeError
from tribunal.schemas.tasks import TaskError, TaskRegistry

__all__ = ["IntakeProcessor", "run", "serve_intake"]

log = get_logger("tribunal.intake")
MAX_TASK_CHARS = 64  # Item.task's bound


class IntakeProcessor(Processor):
    tier = "intake"

    def __init__(
        self, settings: Settings, source: SourceSettings, tasks: TaskRegistry, registry: SchemaRegistry | None
    ) -> None:
        self._settings = settings
        self._source = source
        self._mapping = SourceMapping.of(source, tasks.names)
        self._decoder = SourceDecoder(source.format, source.max_value_bytes, registry)
        self._registry = registry
        self._context = settings.decode_context(tasks)
        self._tasks = tasks
        self._items_topic = settings.topics.items_topic
        self._dlq = settings.topics.dlq(source.topic)

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._source.topic: RawValue}

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        outputs: list[Output] = []
        for record in records:
            try:
                outputs.append(await self.item(record, now))
            except DecodeError as exc:
                where = DeadLetterSource(
                    record.topic, record.partition, record.offset, record.key, record.value, record.headers
                )
                limit = self._context.max_message_bytes
                outputs.append(dead_letter(self._dlq, self.tier, where, exc.kind, str(exc), max_message_bytes=limit))
        return outputs

    async def item(self, record: Record[Any], now: float) -> Output:
        """The `items` record of one source record, or `DecodeError` saying why it has none."""
        decoded = await self._decoder.decode(record.value, record.headers)
        mapped = self._mapping.map(decoded, record.key, (record.topic, record.partition, record.offset), record.headers)
        value = self._validated(mapped, record, now)
        if len(value) > self._context.max_message_bytes:
            raise MappingError(
                f"the item would have {len(value)} bytes, more than max_message_bytes "
                f"({self._context.max_message_bytes}): lower the source's max_value_bytes or keep fewer fields",
                "oversize",
            )
        return Output(self._items_topic, value, mapped.id.encode())

    def _validated(self, mapped: MappedItem, record: Record[Any], now: float) -> bytes:
        """The item's JSON, encoded straight from the mapped fields (what `encode(Item(...))`
        gives: a unit test holds them equal), after the checks the model would make."""
        limit = self._context.max_text_chars
        if not mapped.text:
            raise MappingError("the text is empty", "empty_text")
        if len(mapped.text) > limit:
            why = f"the text has {len(mapped.text)} characters, more than the limit of {limit}"
            raise MappingError(why, "too_long")
        try:
            self._tasks.get(mapped.task)
            gold = mapped.metadata.get("label")
            if gold is not None:
                self._tasks.check_label(mapped.task, gold)
        except TaskError as exc:
            raise MappingError(str(exc), "invalid_item") from None
        if len(mapped.task) > MAX_TASK_CHARS:
            raise MappingError(f"the task name has more than {MAX_TASK_CHARS} characters", "invalid_item")
        item = {
            "schema_version": 1,
            "id": mapped.id,
            "text": mapped.text,
            "task": mapped.task,
            "metadata": mapped.metadata,
            "produced_at": now,
            "source": {
                "name": self._source.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp_ms": record.timestamp_ms,
                "key_b64": None if record.key is None else b64encode(record.key).decode(),
                "value_b64": b64encode(record.value).decode(),
                "headers": headers_b64(record.headers),
            },
        }
        try:
            return orjson.dumps(item)
        except TypeError as exc:  # a kept field that is not JSON (mapping.jsonable converts Avro's)
            raise MappingError(f"a kept field is not JSON: {exc}", "invalid_item") from None

    async def close(self) -> None:
        if self._registry is not None:
            await self._registry.close()


def registry_for(settings: Settings, formats: set[str]) -> SchemaRegistry | None:
    """A registry client when a format needs one (it imports confluent-kafka: only then)."""
    if not formats & REGISTRY_FORMATS:
        return None
    return SchemaRegistry(settings.registry)


async def run(settings: Settings, source_name: str, stop: asyncio.Event | None = None) -> None:
    """Run the intake of one source until SIGINT/SIGTERM (or `stop`): the `tribunal intake` entry."""
    configure_logging(settings.log_format, settings.log_level, tier="intake")
    tune_gc()
    await serve_intake(settings, source_name, stop=stop)


async def serve_intake(settings: Settings, source_name: str, *, stop: asyncio.Event | None = None) -> None:
    """Run the intake of `source_name` inside the caller's own asyncio program."""
    source = settings.source_named(source_name)
    tasks = settings.tasks()
    processor = IntakeProcessor(settings, source, tasks, registry_for(settings, {source.format}))
    context: DecodeContext = settings.decode_context(tasks)
    log.info("intake_source", source=source.name, topic=source.topic, format=source.format)
    await serve(settings, processor, group_id=settings.topics.name(source.group), decode_context=context, stop=stop)
