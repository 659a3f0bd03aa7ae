"""`tribunal ingest`: publish items from JSON Lines or CSV into the `items` topic.

Each line (CSV: each record, which may span lines inside quotes) becomes one `Item`: `id`,
`text`, optional `task`; every other field is kept as metadata (a `label` field is the gold
label, and must name one of the task's labels). The whole line is validated before anything is
published, so a half-valid item is never published; a bad line is reported with its number and
reason and skipped, and never aborts the run. The producer is idempotent, so a retried send
never writes an item twice.

What counts as bad: invalid UTF-8, invalid JSON, a CSV record that is malformed (an unclosed
quote swallows every line to the end of the file: all are rejected together), a line longer
than `4 x max_message_bytes` (skipped without being held in memory), a field over the limits,
an item whose encoding exceeds `max_message_bytes`.

Ids: a string of 1-256 characters without control characters, used as is; or a JSON integer
of at most 64 bits, whose canonical form is its decimal string (`42` -> `"42"`, `-7` -> `"-7"`),
so `42` and `"42"` are one id. Anything else (floats, booleans, objects, integers too big to be
exact) is rejected. A missing or empty id becomes a stable id derived from the task and text.

Line numbers count `\\n` only, as `grep -n` and `wc -l` do (a lone `\\r` is part of its line); a
CSV record is reported at the line it starts on. Exit codes (`ExitCode`): 0 all published,
4 some lines rejected, 5 every line rejected.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
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
from tribunal.core.errors import ExitCode
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeContext, encode, key
from tribunal.schemas.messages import Item

__all__ = ["IngestReport", "Rejected", "canonical_id", "ingest", "parse_lines"]

# Sends awaited together: enough to keep the producer's batches full, bounded for memory.
WINDOW = 20_000
# A line may be longer than the item it makes (escapes, whitespace), but not without bound.
LINE_LIMIT_FACTOR = 4


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

    def exit_code(self) -> ExitCode:
        """0 if nothing was rejected, 4 if some lines were, 5 if every line was."""
        if not self.rejected:
            return ExitCode.OK
        return ExitCode.SOME_REJECTED if self.published else ExitCode.ALL_REJECTED


def stable_id(text: str, task: str) -> str:
    """An id derived from the content, so re-ingesting the same file gives the same ids."""
    return "sha-" + hashlib.sha256(f"{task}\x00{text}".encode(errors="surrogatepass")).hexdigest()[:24]


def canonical_id(raw: object, text: str, task: str) -> str:
    """The item id of a record's `id` field (see the module doc); ValueError if it has none."""
    if raw is None or raw == "":
        return stable_id(text, task)
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool) and -(2**63) <= raw < 2**64:
        return str(raw)
    kind = "an integer beyond 64 bits" if isinstance(raw, int) and not isinstance(raw, bool) else type(raw).__name__
    raise ValueError(f"id must be a string or an integer, not {kind}")


def _lines(stream: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(number, line without its `\\n`) per physical line; None for a line over `limit` bytes,
    which is read past in chunks, never held whole."""
    number = 0
    while line := stream.readline(limit + 1):
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line[:-1] if line.endswith(b"\n") else line


def _jsonl_records(stream: IO[bytes], limit: int) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in _lines(stream, limit):
        if line is None:
            yield number, f"line longer than {limit} bytes"
            continue
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc}"
            continue
        yield number, value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


class _CsvLines:
    """Physical lines for the csv module, decoded; remembers which lines were unusable
    (invalid UTF-8, over the limit) so the record containing them is rejected whole."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._lines = _lines(stream, limit)
        self._limit = limit
        self.bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for number, line in self._lines:
            if line is None:
                self.bad[number] = f"line {number} is longer than {self._limit} bytes"
                yield "\n"
                continue
            try:
                yield line.decode("utf-8") + "\n"
            except UnicodeDecodeError as exc:
                self.bad[number] = f"line {number} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                yield line.decode("utf-8", errors="replace") + "\n"

    def problem(self, first: int, last: int) -> str | None:
        found = [self.bad.pop(n) for n in range(first, last + 1) if n in self.bad]
        return "; ".join(found) or None


def _csv_records(stream: IO[bytes], limit: int) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Records by header, numbered by the line they start on (header = line 1); strict, so a
    malformed record is an error, never a field that silently swallows the lines after it."""
    csv.field_size_limit(limit)  # process-wide, but every caller in Tribunal wants the same bound
    lines = _CsvLines(stream, limit)
    reader = csv.reader(iter(lines), strict=True)
    header: list[str] | None = None
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            span = f"line {start}" if end <= start else f"lines {start}-{end}"
            yield start, f"malformed CSV record ({span}): {exc}"
            lines.problem(start, end)
            continue
        end = reader.line_num
        problem = lines.problem(start, end)
        if header is None:
            if problem or not row:
                yield start, f"unreadable header: {problem or 'empty'}"
                return
            header = row
        elif problem:
            yield start, problem
        elif row:
            yield start, _csv_record(header, row)


def _csv_record(header: list[str], row: list[str]) -> dict[str, Any] | str:
    if len(row) > len(header):
        return "more fields than the header has"
    return {name: value for name, value in zip(header, row, strict=False) if value != ""}


def to_item(record: dict[str, Any], default_task: str, context: DecodeContext) -> Item:
    """Validate one input record as an Item; raise ValueError saying what is wrong."""
    record = dict(record)
    text = record.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing or empty 'text'")
    task = record.pop("task", None) or default_task
    if not isinstance(task, str):  # ValueError: this function's one error, a rejected line
        raise ValueError(f"task must be a string, not {type(task).__name__}")  # noqa: TRY004
    item_id = canonical_id(record.pop("id", None), text, task)
    try:
        item = Item.model_validate(
            {"id": item_id, "text": text, "task": task, "metadata": record},
            context=context.as_validation_context(),
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None
    return item


def parse_lines(
    stream: IO[bytes], fmt: str, default_task: str, context: DecodeContext
) -> Iterator[tuple[int, Item | Rejected]]:
    """(line number, item or why the line is rejected) for every non-blank line of `stream`."""
    limit = LINE_LIMIT_FACTOR * context.max_message_bytes
    records = _csv_records(stream, limit) if fmt == "csv" else _jsonl_records(stream, limit)
    for number, record in records:
        if isinstance(record, str):
            yield number, Rejected(number, record)
            continue
        try:
            yield number, to_item(record, default_task, context)
        except ValueError as exc:
            yield number, Rejected(number, str(exc))


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return Path(path).open("rb")


async def ingest(settings: Settings, path: str, *, topic: str | None = None, task: str = "sentiment",
                 fmt: str | None = None, progress: bool = False) -> IngestReport:  # fmt: skip
    """Publish every valid line of `path` ('-' for stdin); report what was rejected and why."""
    context = settings.decode_context(settings.tasks())
    target = topic or settings.topics.items_topic
    file_format = fmt or ("csv" if path.lower().endswith(".csv") else "jsonl")
    report = IngestReport()
    started = time.perf_counter()
    producer = kafka.idempotent_producer(settings.kafka, settings.max_record_bytes)
    await kafka.start(producer, settings.kafka)
    try:
        with _open(path) as stream, Progress(disable=not progress, transient=True) as bar:
            job = bar.add_task("ingesting", total=None)
            pending = []
            for number, result in parse_lines(stream, file_format, task, context):
                if isinstance(result, Rejected):
                    report.rejected.append(result)
                    continue
                payload, item_key = encode(result), key(result.id)
                if (size := len(payload) + len(item_key)) > context.max_message_bytes:
                    why = f"the item is {size} bytes encoded, over the limit of {context.max_message_bytes}"
                    report.rejected.append(Rejected(number, why))
                    continue
                pending.append(await producer.send(target, payload, key=item_key))
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
