"""`tribunal ingest`: publish items from JSON Lines or CSV into the `items` topic.

Each line becomes one `Item`: `id` (or a stable id derived from the content when missing),
`text`, optional `task`; every other field is kept as metadata (a `label` field is the gold
label reports compare against). A bad line is reported with its number and reason and skipped;
it never aborts the run and is never published half-valid. The producer is idempotent, so a
retried send never writes an item twice.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError
from rich.progress import Progress

from tribunal.core import kafka
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeContext, encode, key
from tribunal.schemas.messages import Item

__all__ = ["IngestReport", "Rejected", "ingest", "parse_lines"]

# Sends awaited together: enough to keep the producer's batches full, bounded for memory.
WINDOW = 20_000


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass
class IngestReport:
    published: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
        }


def stable_id(text: str, task: str) -> str:
    """An id derived from the content, so re-ingesting the same file gives the same ids."""
    return "sha-" + hashlib.sha256(f"{task}\x00{text}".encode()).hexdigest()[:24]


def _records(stream: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record or the reason it is unreadable), numbered from 1 (CSV: header = 1)."""
    if fmt == "csv":
        reader = csv.DictReader(stream)
        for row in reader:
            if None in row:
                yield reader.line_num, "more fields than the header has"
            else:
                yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
        return
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc}"
            continue
        yield (
            number,
            value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}",
        )


def to_item(record: dict[str, Any], default_task: str, context: DecodeContext) -> Item:
    """Validate one input record as an Item; raise ValueError saying what is wrong."""
    record = dict(record)
    text = record.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing or empty 'text'")
    task = record.pop("task", None) or default_task
    raw_id = record.pop("id", None)
    item_id = str(raw_id) if raw_id not in (None, "") else stable_id(text, str(task))
    try:
        return Item.model_validate(
            {"id": item_id, "text": text, "task": task, "metadata": record},
            context=context.as_validation_context(),
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


def parse_lines(
    stream: IO[str], fmt: str, default_task: str, context: DecodeContext
) -> Iterator[tuple[int, Item | Rejected]]:
    for number, record in _records(stream, fmt):
        if isinstance(record, str):
            yield number, Rejected(number, record)
            continue
        try:
            yield number, to_item(record, default_task, context)
        except ValueError as exc:
            yield number, Rejected(number, str(exc))


def _open(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    return Path(path).open(encoding="utf-8", newline="")


async def ingest(settings: Settings, path: str, *, topic: str | None = None, task: str = "sentiment",
                 fmt: str | None = None, progress: bool = False) -> IngestReport:  # fmt: skip
    """Publish every valid line of `path` ('-' for stdin); report what was rejected and why."""
    context = settings.decode_context(settings.tasks())
    target = topic or settings.topics.items_topic
    file_format = fmt or ("csv" if path.lower().endswith(".csv") else "jsonl")
    report = IngestReport()
    started = time.perf_counter()
    producer = kafka.idempotent_producer(settings.kafka, max_request_size=settings.max_message_bytes + 65_536)
    await producer.start()
    try:
        with _open(path) as stream, Progress(disable=not progress, transient=True) as bar:
            job = bar.add_task("ingesting", total=None)
            pending = []
            for number, result in parse_lines(stream, file_format, task, context):
                if isinstance(result, Rejected):
                    report.rejected.append(result)
                    continue
                payload = encode(result)
                if len(payload) > settings.max_message_bytes:
                    report.rejected.append(Rejected(number, f"encoded item is {len(payload)} bytes, over the limit"))
                    continue
                pending.append(await producer.send(target, payload, key=key(result.id)))
                if len(pending) >= WINDOW:
                    report.published += await _settle(pending)
                    bar.update(job, completed=report.published)
            report.published += await _settle(pending)
            await producer.flush()
    finally:
        await producer.stop()
    report.seconds = time.perf_counter() - started
    return report


async def _settle(pending: list[Any]) -> int:
    results = await asyncio.gather(*pending)
    pending.clear()
    return len(results)
