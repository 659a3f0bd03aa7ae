"""`tribunal replay votes`, streamed: re-decide a recorded pipeline in bounded memory.

1. The source's verdicts (`labels`, first per item id) and audits are indexed compactly: per item
   id its label, who decided, confidence and judge latency (about 200 bytes an item: the one
   part that grows with the log, needed for the diff and to reuse judge labels).
2. `items` and `votes` are read together, partition by partition (co-partitioned), from the
   beginning to their end offsets at the start. An item is decided as soon as every expected
   worker has voted on it or its recorded position (`VoteBatch.next_offset`) has passed it, so
   only items whose votes are still to come are held; at the end of the log the rest are
   decided with what they have (a missing vote is the deadline case). A partition whose held
   items or early votes pass `HELD_PER_PARTITION` is paused until the other side catches up.
3. New verdicts and judge requests are published as they are made (`Redecider`), a bounded
   number in flight; only counts are kept for the report.

Ids decided within the last `aggregator.window_s` of item time are remembered, so an item sent
twice is decided once, as by the aggregator. Vote logs recorded before `VoteBatch` (one `Vote`
per record, no positions) are read too, but then items wait for the end of the log.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import BaseModel, ConfigDict

from tribunal.core import kafka
from tribunal.core.batches import Output, produce
from tribunal.core.settings import Settings
from tribunal.core.topics import describe_partition_counts, read_to_end
from tribunal.producers.redecide import RecordedVerdict, Redecider, judge_label
from tribunal.schemas.codec import DecodeError, decode, encode, key
from tribunal.schemas.messages import DecidedBy, Item, JudgeRequest, Verdict, Vote, VoteBatch, VoteRow

__all__ = ["HELD_PER_PARTITION", "Publisher", "VerdictIndex", "index_verdicts", "stream_redecide"]

HELD_PER_PARTITION = 5_000
IN_FLIGHT = 10_000  # records sent between waits for their acknowledgements
STALL_S = 30.0


class _Summary(BaseModel):
    """The fields of a `Verdict` replay needs; the rest (its votes) is parsed past, not built."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    item_id: str
    label: str
    decided_by: DecidedBy
    confidence: float = 0.0
    judge_latency_ms: float | None = None


class Summary(NamedTuple):
    """A recorded verdict, compactly (a tuple: ~100 bytes with its label and kind shared)."""

    label: str
    decided_by: DecidedBy
    confidence: float
    judge_latency_ms: float | None


@dataclass(slots=True)
class VerdictIndex:
    """First verdict per item id on `labels`, and the judge's audit verdicts. Only a judge's
    verdict keeps its confidence and latency (reused for the new label); the others share one
    summary per (label, decided_by), so an item costs its id and a dict slot."""

    originals: dict[str, Summary] = field(default_factory=dict)
    audits: dict[str, Summary] = field(default_factory=dict)
    undecodable: int = 0
    _shared: dict[tuple[str, DecidedBy], Summary] = field(default_factory=dict)

    def add(self, record: ConsumerRecord[bytes, bytes], into: dict[str, Summary], keep_first: bool) -> None:
        try:
            v = decode(record.value, _Summary)
        except DecodeError:
            self.undecodable += 1
            return
        if keep_first and v.item_id in into:
            return
        if v.decided_by is DecidedBy.JUDGE:
            summary = Summary(sys.intern(v.label), v.decided_by, v.confidence, v.judge_latency_ms)
        else:
            summary = self._shared.setdefault((v.label, v.decided_by), Summary(v.label, v.decided_by, 0.0, None))
        # Interned: the streamed items' ids then point at these strings instead of copies.
        into[sys.intern(v.item_id)] = summary


async def _read_all(settings: Settings, topic: str, handle: Callable[[ConsumerRecord[bytes, bytes]], None]) -> None:
    """Every committed record of `topic` up to its end offsets now, handed to `handle` in turn."""
    count = (await describe_partition_counts(settings, [topic])).get(topic)
    if count:
        async for record in read_to_end(settings, [TopicPartition(topic, p) for p in range(count)], stall_s=STALL_S):
            handle(record)


async def _getmany(consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> dict[TopicPartition, list[Any]]:
    batch: dict[TopicPartition, list[Any]] = await asyncio.wait_for(
        consumer.getmany(*tps, timeout_ms=500, max_records=10_000), STALL_S
    )
    return batch


async def index_verdicts(source: Settings) -> VerdictIndex:
    index = VerdictIndex()
    await _read_all(source, source.topics.labels_topic, lambda r: index.add(r, index.originals, keep_first=True))
    await _read_all(source, source.topics.audits_topic, lambda r: index.add(r, index.audits, keep_first=False))
    return index


@dataclass(slots=True)
class _Partition:
    """Held work of one partition number: items (and their offset order), votes by item, positions."""

    items: dict[str, tuple[int, Item]] = field(default_factory=dict)
    order: deque[str] = field(default_factory=deque)
    # item id -> worker -> its vote: a row of a VoteBatch (made a `Vote` only when decided), or a
    # `Vote` record of an older log.
    votes: dict[str, dict[str, tuple[VoteBatch, VoteRow] | Vote]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    early: int = 0  # ids with votes whose item is not read yet

    def add_vote(self, item_id: str, worker: str, vote: tuple[VoteBatch, VoteRow] | Vote) -> None:
        voted = self.votes.get(item_id)
        if voted is None:
            voted = self.votes[item_id] = {}
            self.early += item_id not in self.items
        voted.setdefault(worker, vote)

    def add_item(self, item_id: str, offset: int, item: Item) -> None:
        self.items[item_id] = (offset, item)
        self.order.append(item_id)
        self.early -= item_id in self.votes

    def complete(self, item_id: str, offset: int, expected: tuple[str, ...]) -> bool:
        voted = self.votes.get(item_id, {})
        return all(w in voted or self.positions.get(w, -1) > offset for w in expected)

    def take(self, item_id: str, expected: tuple[str, ...]) -> list[Vote]:
        voted = self.votes.pop(item_id, {})
        return [_as_vote(voted[w]) for w in sorted(voted) if w in expected]


def _as_vote(vote: tuple[VoteBatch, VoteRow] | Vote) -> Vote:
    return vote if isinstance(vote, Vote) else vote[0].vote(vote[1])


class _Stream:
    """The items + votes join of the whole source, deciding items as they complete."""

    def __init__(self, source: Settings, redecider: Redecider, index: VerdictIndex) -> None:
        self._expected = tuple(source.aggregator.workers)
        self._window_s = source.aggregator.window_s
        self._items_topic = source.topics.items_topic
        self._redecider = redecider
        self._index = index
        self._parts: dict[int, _Partition] = {}
        self._seen: set[str] = set()
        self._seen_by_second: deque[tuple[int, list[str]]] = deque()  # ids per second of item time
        self.undecodable = 0

    def record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        part = self._parts.setdefault(record.partition, _Partition())
        try:
            if record.topic == self._items_topic:
                self._item(part, record.offset, decode(record.value, Item), record.timestamp / 1000.0)
            else:
                self._votes(part, record.value)
        except DecodeError:
            self.undecodable += 1  # the source's DLQ already has it

    def _item(self, part: _Partition, offset: int, item: Item, at: float) -> None:
        item_id = sys.intern(item.id)
        if item_id in self._seen:
            return  # the same id again within the window: the first copy counts
        self._remember(item_id, int(at))
        part.add_item(item_id, offset, item)

    def _remember(self, item_id: str, second: int) -> None:
        """Ids are remembered for `window_s` of item time, in one list per second (cheap to drop)."""
        buckets = self._seen_by_second
        while buckets and buckets[0][0] < second - self._window_s:
            self._seen.difference_update(buckets.popleft()[1])
        if not buckets or buckets[-1][0] != second:
            buckets.append((second, []))
        buckets[-1][1].append(item_id)
        self._seen.add(item_id)

    def _votes(self, part: _Partition, value: bytes | None) -> None:
        try:
            batch = decode(value, VoteBatch)
        except DecodeError:
            vote = decode(value, Vote)  # a log recorded before VoteBatch: no positions
            if not self._decided(part, vote.item_id):
                part.add_vote(sys.intern(vote.item_id), vote.worker, vote)
            return
        for row in batch.votes:
            if not self._decided(part, row[0]):
                part.add_vote(sys.intern(row[0]), batch.worker, (batch, row))
        part.positions[batch.worker] = max(part.positions.get(batch.worker, 0), batch.next_offset)

    def _decided(self, part: _Partition, item_id: str) -> bool:
        """A vote for an item already decided (a worker voting again after a rebalance): ignored."""
        return item_id in self._seen and item_id not in part.items

    def decide_ready(self, partition: int, final: bool = False) -> None:
        """Decide the partition's held items, oldest first, while complete (all of them if final)."""
        part = self._parts.get(partition)
        if part is None:
            return
        while part.order:
            item_id = part.order[0]
            offset, item = part.items[item_id]
            if not final and not part.complete(item_id, offset, self._expected):
                break
            part.order.popleft()
            del part.items[item_id]
            original = self._index.originals.get(item_id)
            judge: RecordedVerdict | None = judge_label(original, self._index.audits.get(item_id))
            self._redecider.decide(item, part.take(item_id, self._expected), original, judge)
        if final:
            part.votes.clear()
            part.early = 0

    def held(self, partition: int) -> tuple[int, int]:
        """(held items, ids with votes but no item yet) of a partition."""
        part = self._parts.get(partition)
        if part is None:
            return 0, 0
        return len(part.items), part.early


async def stream_redecide(
    source: Settings, redecider: Redecider, index: VerdictIndex, flush: Callable[[], Awaitable[None]]
) -> int:
    """Feed the source's items and votes through `redecider` (module docstring), awaiting `flush`
    after each fetch (to publish what was decided); return the records that did not decode."""
    topics = [source.topics.items_topic, source.topics.votes_topic]
    counts = await describe_partition_counts(source, topics)
    tps = [TopicPartition(t, p) for t in topics for p in range(counts.get(t, 0))]
    stream = _Stream(source, redecider, index)
    consumer = kafka.consumer(source.kafka, source.runtime, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        open_tps = {tp for tp in tps if end[tp] > 0}
        while open_tps:
            _flow(consumer, stream, open_tps, source.topics.items_topic)
            fetchable = open_tps - consumer.paused()
            batch = await _getmany(consumer, fetchable or open_tps)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        stream.record(record)
                stream.decide_ready(tp.partition)
            await flush()
            for tp in list(open_tps):
                if await consumer.position(tp) >= end[tp]:
                    open_tps.discard(tp)
                    consumer.pause(tp)
        for partition in sorted({tp.partition for tp in tps}):
            stream.decide_ready(partition, final=True)
            await flush()
    finally:
        await consumer.stop()
    return stream.undecodable


def _flow(consumer: AIOKafkaConsumer, stream: _Stream, open_tps: set[TopicPartition], items_topic: str) -> None:
    """Bound what is held: pause a partition's items while too many wait for votes, its votes
    while too many wait for their items. Never both, and never one whose other side is read to
    its end (waiting could not help): one of the two always flows."""
    pause: list[TopicPartition] = []
    resume: list[TopicPartition] = []
    for tp in open_tps:
        items, early = stream.held(tp.partition)
        is_items = tp.topic == items_topic
        other_open = any(o.partition == tp.partition and (o.topic == items_topic) != is_items for o in open_tps)
        hold = other_open and (
            (is_items and items >= HELD_PER_PARTITION and early < HELD_PER_PARTITION)
            or (not is_items and early >= HELD_PER_PARTITION)
        )
        (pause if hold else resume).append(tp)
    consumer.pause(*pause)
    consumer.resume(*resume)


class Publisher:
    """Publishes replay outputs with an idempotent producer, at most IN_FLIGHT unacknowledged."""

    def __init__(self, target: Settings) -> None:
        self._target = target
        self._producer: AIOKafkaProducer = kafka.idempotent_producer(
            target.kafka, max_request_size=target.max_message_bytes + 65_536
        )
        self._pending: list[Output] = []
        self._in_flight: list[asyncio.Future[Any]] = []
        self._queued = 0  # records sent since the last wait

    async def start(self) -> None:
        await self._producer.start()

    def emit(self, output: Verdict | JudgeRequest) -> None:
        """Queue one output (called synchronously by the Redecider; sent by `flush`)."""
        topics = self._target.topics
        if isinstance(output, Verdict):
            self._pending.append(Output(topics.labels_topic, encode(output), key(output.item_id)))
        else:
            self._pending.append(Output(topics.judge_topic, encode(output), key(output.item.id)))

    async def flush(self, wait: bool = False) -> None:
        pending, self._pending = self._pending, []
        self._in_flight += await produce(self._producer, pending)
        self._queued += len(pending)
        if wait or self._queued >= IN_FLIGHT:
            self._queued = 0
            await asyncio.gather(*self._in_flight)
            self._in_flight.clear()

    async def stop(self) -> None:
        try:
            await self.flush(wait=True)
        finally:
            await self._producer.stop()
