"""Rebuilding an aggregator partition's state when it is assigned: its decided ids and awaited
tickets, replayed from its partition of the `aggregator-decided` log (`AggregatorLog`) to the
log's end, before any of its items or votes are processed. The bookkeeping itself is
`consumers.aggregator.state`; this module is the one place the aggregator reads that log."""

from __future__ import annotations

from aiokafka import TopicPartition

from tribunal.consumers.aggregator.state import PartitionState
from tribunal.core.logs import get_logger
from tribunal.core.metrics import SKIPPED_RECORDS
from tribunal.core.settings import Settings
from tribunal.core.topics import read_to_end
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import AggregatorLog

__all__ = ["restore_from_log"]

log = get_logger("tribunal.aggregator")


async def restore_from_log(settings: Settings, numbers: set[int], horizon: float) -> dict[int, PartitionState]:
    """The state of partitions `numbers` as the log has it: decided ids newer than `horizon`
    (older ones can no longer matter), awaited tickets, and how far items and votes were read."""
    states = {n: PartitionState() for n in numbers}
    context = settings.decode_context()
    tps = [TopicPartition(settings.topics.state_topic, n) for n in sorted(numbers)]
    async for record in read_to_end(settings, tps):
        try:
            entry = decode(record.value, AggregatorLog, context)
        except DecodeError as exc:  # not ours: someone else wrote it
            SKIPPED_RECORDS.labels("aggregator", record.topic, exc.kind).inc()
            log.warning("log_record_skipped", partition=record.partition, offset=record.offset, error=str(exc))
            continue
        states[record.partition].replay(entry, horizon, record.timestamp / 1000.0)
    log.info("state_restored", partitions=sorted(numbers), decided=sum(len(s.decided) for s in states.values()),
             awaiting=sum(len(s.awaiting) for s in states.values()))  # fmt: skip
    return states
