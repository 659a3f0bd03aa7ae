"""What every table kept in a compacted topic shares: its keys, and the partition-owned writer.

A table row belongs to a (task, judge partition): the key is `task|partition` (`table_key`), and
`task|calibration` for a shipped warm start's history, kept as partition -1. `PartitionTable` is
the writer side, used by the judge for its evidence windows and reliability counts: it holds the
rows of the partitions this instance owns, hands the rows changed since the last call to the
transaction that changed them (`outputs`), drops them when their partitions go (`forget`) and
reads them back from the topic when partitions come (`restore`). A row that cannot be decoded is
skipped with a metric and a log line: the topic is ours, but a hostile producer must not stop a
tier through it. So a table is exactly-once with the tier's outputs and bounded by its rows.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from aiokafka import TopicPartition

from tribunal.core import metrics
from tribunal.core.batches import Output
from tribunal.core.logs import get_logger
from tribunal.core.settings import Settings
from tribunal.core.topics import partitions_of, read_to_end
from tribunal.schemas.codec import DecodeError
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["HISTORY", "Key", "PartitionTable", "parse_table_key", "skip_row", "table_key"]

log = get_logger("tribunal.tables")

# The key suffix of a warm start's history (`tribunal calibrate`), kept as partition -1.
HISTORY = "calibration"

Key = tuple[str, int]  # (task, judge partition)
Row = TypeVar("Row")


def table_key(task: str, partition: int) -> bytes:
    """The record key of a (task, partition) row; partition -1 is a warm start's history."""
    return f"{task}|{HISTORY if partition < 0 else partition}".encode()


def parse_table_key(raw: bytes | None) -> Key | None:
    """(task, partition) of a table key, -1 for a warm start's history; None for anything else."""
    if raw is None:
        return None
    task, _, partition = raw.decode("utf-8", errors="replace").rpartition("|")
    if not task:
        return None
    if partition == HISTORY:
        return task, -1
    # isdigit() alone accepts '²', which int() refuses.
    ok = partition.isascii() and partition.isdigit() and len(partition) <= 9
    return (task, int(partition)) if ok else None


def skip_row(table: str, topic: str, key: Key, exc: DecodeError) -> None:
    """Count and log a table row that cannot be decoded (module docstring: skipped, never fatal)."""
    metrics.SKIPPED_RECORDS.labels(table, topic, exc.kind).inc()
    log.warning("table_row_skipped", table=table, key=f"{key[0]}|{key[1]}", error=str(exc))


class PartitionTable(Generic[Row]):
    """Rows of the (task, partition) keys this instance owns, written with the transaction that
    changed them (module docstring). Subclasses name the topic and how a row is (de)coded."""

    name = "table"  # for metrics and logs

    def __init__(self, settings: Settings, tasks: TaskRegistry, topic: str) -> None:
        self._settings = settings
        self._tasks = tasks
        self._topic = topic
        self._rows: dict[Key, Row] = {}
        self._dirty: set[Key] = set()

    def encode_row(self, row: Row) -> bytes:
        raise NotImplementedError

    def decode_row(self, task: str, value: bytes) -> Row:
        """The row a record holds; `DecodeError` if it holds none."""
        raise NotImplementedError

    def changed(self, key: Key) -> None:
        """Mark `key`'s row as changed: the next `outputs` writes it."""
        self._dirty.add(key)

    def outputs(self) -> list[Output]:
        """The rows changed since the last call, for the current transaction."""
        records = [Output(self._topic, self.encode_row(self._rows[k]), table_key(*k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return records

    def forget(self, partitions: set[int]) -> None:
        """Drop the rows of `partitions` (revoked: another instance owns them now)."""
        for key in [k for k in self._rows if k[1] in partitions]:
            del self._rows[key]
        self._dirty = {k for k in self._dirty if k[1] not in partitions}

    async def restore(self, partitions: set[int]) -> None:
        """Load the committed rows of `partitions` (the topic is small: tasks x partitions)."""
        tps: list[TopicPartition] = await partitions_of(self._settings, self._topic)
        async for record in read_to_end(self._settings, tps):
            key = parse_table_key(record.key)
            if key is None or key[1] not in partitions or key[0] not in self._tasks:
                continue
            if record.value is None:
                self._rows.pop(key, None)
                continue
            try:
                self._rows[key] = self.decode_row(key[0], record.value)
            except DecodeError as exc:
                skip_row(self.name, self._topic, key, exc)
