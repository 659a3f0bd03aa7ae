"""How a tier reads and writes its batches: fair, lingering only while there is more to read,
and produced one record batch per partition. Used by the runtime loop (`tribunal.core.runtime`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from tribunal.core import kafka

__all__ = ["IDLE_TICK_MS", "Output", "at_end", "fetch", "produce"]


@dataclass(slots=True)
class Output:
    """A record to produce in the batch's transaction. `partition=None` lets the key decide (the
    default partitioner: murmur2 of the key, as every Kafka client computes it). Treat as immutable."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    # A list (aiokafka's record builder takes no other sequence); None: no headers.
    headers: list[tuple[str, bytes]] | None = None


# With no input the loop still comes round this often (deadlines, heartbeats); records that
# arrive end the wait at once, so this bounds the idle loop's cost, not latency.
IDLE_TICK_MS = 100


async def produce(producer: AIOKafkaProducer, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
    """Send `outputs` as one record batch per partition, in order within each partition; the
    futures of the batches (a transaction's commit waits for them itself).

    `producer.send` costs about ten times more per record than appending to a batch (a future,
    a metadata wait and a partition lookup each); a tier produces several records per item."""
    partitions: dict[str, list[int]] = {}
    groups: dict[tuple[str, int], list[Output]] = {}
    for out in outputs:
        partition = out.partition
        if partition is None:
            known = partitions.get(out.topic)
            if known is None:
                known = partitions[out.topic] = sorted(await producer.partitions_for(out.topic))
            partition = kafka.partition_for(out.key, known)
        groups.setdefault((out.topic, partition), []).append(out)
    sent = []
    for (topic, partition), group in groups.items():
        batch = producer.create_batch()
        for out in group:
            headers = out.headers
            if batch.append(key=out.key, value=out.value, timestamp=None, headers=headers) is None:
                # full: send it, start another
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=out.key, value=out.value, timestamp=None, headers=headers)
        sent.append(await producer.send_batch(batch, topic, partition=partition))
    return sent


async def fetch(
    consumer: AIOKafkaConsumer, batch_size: int, wait_ms: int
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Up to `batch_size` records, a fair share from each partition; lingers (at most `wait_ms`)
    only while there is more to read.

    At moderate load nothing more is on the broker: waiting would add `wait_ms` to every hop and
    buy nothing, so the batch goes at once; while its transaction commits the next records
    gather, so batches still grow with load (group commit). Behind a backlog the broker already
    holds more than one fetch returned: keep reading until the batch is full, so each
    transaction's round trips are spread over many records.
    """
    share = max(1, batch_size // max(1, len(consumer.assignment() - consumer.paused())))
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
        timeout_ms=IDLE_TICK_MS, max_records=share
    )
    deadline = time.monotonic() + wait_ms / 1000.0
    count = await _fill(consumer, batch, batch_size)
    while 0 < count < batch_size and (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        if not await _more_to_read(consumer):
            break
        more = await consumer.getmany(timeout_ms=left_ms, max_records=min(share, batch_size - count))
        for tp, records in more.items():
            _extend(batch, tp, records)
        count = await _fill(consumer, batch, batch_size)
    return batch


def _extend(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    tp: TopicPartition,
    records: list[ConsumerRecord[bytes, bytes]],
) -> int:
    """Append `records` to the partition's list, each offset once; return how many were new.

    A rebalance between two reads rewinds a partition to its committed offset, so the same
    records may come again: a batch holding an offset twice would handle it twice."""
    have = batch.setdefault(tp, [])
    last = have[-1].offset if have else -1
    fresh = [r for r in records if r.offset > last] if have else records
    have.extend(fresh)
    return len(fresh)


async def _fill(
    consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], batch_size: int
) -> int:
    """Top `batch` up with records already fetched, a share from each partition in turn; return
    its size. aiokafka hands out one partition's fetched records before the next, so behind a
    backlog a batch would hold one partition only, and the others would wait for it to drain."""
    count = sum(len(records) for records in batch.values())
    partitions = sorted(consumer.assignment() - consumer.paused(), key=lambda tp: (tp.topic, tp.partition))
    while partitions and count < batch_size:
        share = max(1, (batch_size - count) // len(partitions))
        added = 0
        for tp in partitions:
            got = await consumer.getmany(tp, timeout_ms=0, max_records=min(share, batch_size - count))
            for records in got.values():
                fresh = _extend(batch, tp, records)
                added += fresh
                count += fresh
            if count >= batch_size:
                break
        if not added:
            break
    return count


async def _more_to_read(consumer: AIOKafkaConsumer) -> bool:
    """Whether the last fetch responses showed records beyond our position on some partition."""
    fetchable = consumer.assignment() - consumer.paused()
    return len(await at_end(consumer, fetchable)) < len(fetchable)


async def at_end(consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> set[TopicPartition]:
    """The partitions whose last fetch response showed nothing beyond our position. read_committed
    readers compare with the last stable offset; a gap of 1 can be the commit marker of the
    transaction just read, which is no record to wait for."""
    done = set()
    assigned = consumer.assignment()
    for tp in partitions & assigned:
        end = consumer.last_stable_offset(tp)
        if end is None or end < 0:
            end = consumer.highwater(tp)
        if end is not None and end - await consumer.position(tp) <= 1:
            done.add(tp)
    return done
