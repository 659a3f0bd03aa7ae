"""`tribunal source check`: how the first records of a source topic map to items, or why they do
not, through the intake tier's own code path, without publishing anything and without joining a
consumer group (nothing is committed)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition

from tribunal.cli.common import JsonOption, emit, fail, settings_from
from tribunal.core import kafka
from tribunal.core.errors import ConfigError
from tribunal.core.records import Record
from tribunal.core.settings import Settings
from tribunal.core.topics import partitions_of
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import Item

__all__ = ["register"]

source_app = typer.Typer(help="Your own topics: see how their records map to items.", no_args_is_help=True)
PREVIEW_CHARS = 120


async def check(settings: Settings, name: str, limit: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """The first `limit` records of the source (taken from its partitions in turn), each mapped or
    refused with the dead letter's kind and reason."""
    from tribunal.consumers.intake import IntakeProcessor, registry_for

    source = settings.source_named(name)
    tasks = settings.tasks()
    registry = registry_for(settings, {source.format})
    processor = IntakeProcessor(settings, source, tasks, registry)
    consumer = kafka.consumer(settings.kafka, settings.runtime, group_id=None, record_limit=settings.max_record_bytes)
    await kafka.start(consumer, settings.kafka)
    try:
        try:
            tps = await partitions_of(settings, source.topic)
        except ConfigError:
            raise ConfigError(f"topic {source.topic} of source {name} does not exist: check its name") from None
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        raw = await _first(consumer, tps, limit, timeout_s)
        rows = []
        for record in raw:
            row: dict[str, Any] = {"partition": record.partition, "offset": record.offset}
            try:
                output = await processor.item(record, time.time())
            except DecodeError as exc:
                row |= {"ok": False, "kind": exc.kind, "reason": str(exc)}
            else:
                item = decode(output.value, Item)
                text = item.text if len(item.text) <= PREVIEW_CHARS else item.text[:PREVIEW_CHARS] + "..."
                row |= {"ok": True, "id": item.id, "task": item.task, "text": text, "metadata": item.metadata}
            rows.append(row)
        mapped = sum(1 for row in rows if row["ok"])
        return {"source": name, "topic": source.topic, "format": source.format, "read": len(rows), "mapped": mapped,
                "refused": len(rows) - mapped, "records": rows}  # fmt: skip
    finally:
        await consumer.stop()
        await processor.close()


async def _first(consumer: AIOKafkaConsumer, tps: list[TopicPartition], limit: int, timeout_s: float) -> list[Any]:
    """Up to `limit` records, interleaved across partitions: up to `limit` are read from each
    partition (or all it has), so a busy partition never hides the others' first records."""
    ends = await consumer.end_offsets(tps)
    per: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wanted = [tp for tp in tps if len(per[tp]) < limit and await consumer.position(tp) < ends[tp]]
        if not wanted:
            break
        batch = await consumer.getmany(*wanted, timeout_ms=200, max_records=limit)
        for tp, records in batch.items():
            per[tp] += records[: limit - len(per[tp])]
    interleaved = [rs[i] for i in range(limit) for rs in per.values() if i < len(rs)][:limit]
    return [
        Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.value, r.headers) for r in interleaved
    ]


@source_app.command("check")
def check_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The [[source]] to check (the only one if omitted)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Records to read")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Map the first records of a source topic as the intake would, and say why any is refused."""
    settings = settings_from(ctx)
    try:
        if name is None:
            if len(settings.source) != 1:
                raise ConfigError(f"name the source to check: {[s.name for s in settings.source]}")
            name = settings.source[0].name
        report = asyncio.run(check(settings, name, limit))
    except ConfigError as exc:
        raise fail(exc) from None
    if as_json:
        emit(report)
        return
    for row in report["records"]:
        where = f"[{row['partition']}@{row['offset']}]"
        if row["ok"]:
            typer.echo(f"{where} ok  id={row['id']} task={row['task']} text={row['text']!r}")
            if row["metadata"]:
                typer.echo(f"{' ' * len(where)}     metadata={row['metadata']}")
        else:
            typer.echo(f"{where} DLQ {row['kind']}: {row['reason']}")
    typer.echo(f"{report['mapped']} of {report['read']} records map; {report['refused']} would be dead letters")
    if report["refused"]:
        raise typer.Exit(4)


def register(app: typer.Typer) -> None:
    app.add_typer(source_app, name="source")
