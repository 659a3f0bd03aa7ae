"""The one consume-process-produce loop every tier runs, exactly once.

Each iteration: fetch a batch (`getmany`), admit it into the tier's input models
(`tribunal.core.intake`: size, shape, key, partition; a refused record becomes a `DeadLetter` for
`<topic>.dlq` if this tier owns that topic's dead letters, else it is skipped and counted, so
one bad record makes one letter), hand it to the tier's `Processor`, then, in ONE
Kafka transaction, produce every output and commit the consumed offsets
(`send_offsets_to_transaction`). Outputs and progress therefore become visible together or not
at all; consumers read with `isolation_level=read_committed`.

Contract with the `Processor`:
- `process` and `tick` are called with the runtime's lock held; the rebalance listener takes the
  same lock, so a revoke waits until the in-flight transaction is committed, and records of a
  partition revoked in between are dropped, never committed by us.
- Any error escaping a `Processor` or a failed commit aborts the transaction and is fatal: the
  process exits non-zero without committing, and the next incarnation resumes from the last
  committed offsets with its state restored (e.g. from a log topic). Per-item failures are the
  processor's to absorb (abstain votes, fallback labels); this loop never dies on bad input.
- Backpressure: partitions named by `paused_partitions()` (by default, those of the topics named by
  `paused_topics()`) stop being fetched until it no longer names them.
- Progress: the offsets committed are the next offsets consumed unless `commit_offsets` lowers
  them (a processor that keeps undecided work only in memory has it re-read after a restart);
  `refused` hears of every record refused at intake, so it can tell re-read ones, whose dead
  letters were written the first time, and record how far it has read in the same transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from tribunal.core import intake, kafka, metrics
from tribunal.core.batches import Output, at_end, fetch, produce
from tribunal.core.errors import FatalError
from tribunal.core.health import Health, serve_health
from tribunal.core.logs import get_logger
from tribunal.core.process import run_until_signalled
from tribunal.core.records import DeadLetterSource, RawValue, Record, dead_letter
from tribunal.core.settings import Settings
from tribunal.schemas.codec import DecodeContext, DecodeError

__all__ = [
    "Processor",
    "StreamRunner",
    "pacing_pause",
    "serve",
]

log = get_logger("tribunal.runtime")


class Processor:
    """What a tier plugs into the runtime. Override `process`; the rest are optional hooks."""

    tier: str = "tier"
    # Records per batch for this tier, when it differs from `runtime.batch_size` (the aggregator
    # amortises each transaction over many cheap records; a GPU judge wants its own batch size).
    batch_size: int | None = None

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        """Input topic -> the model its records decode into."""
        raise NotImplementedError

    def owns_dead_letters(self, topic: str) -> bool:
        """Whether this tier dead-letters the records of `topic` it refuses. Exactly one tier
        owns each topic's letters (items: the aggregator); the others skip such records and
        count them (`tribunal_skipped_records_total`)."""
        return True

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        raise NotImplementedError

    async def tick(self, now: float) -> list[Output]:
        """Called every loop iteration, batch or not (deadlines, expiry)."""
        return []

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Partitions became ours: restore their state before any of their records arrive."""

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions are no longer ours; everything of theirs is already committed."""

    def paused_topics(self) -> frozenset[str]:
        return frozenset()

    def paused_partitions(self, owned: set[TopicPartition]) -> set[TopicPartition]:
        """Owned partitions not to fetch from for now."""
        topics = self.paused_topics()
        return {tp for tp in owned if tp.topic in topics}

    def commit_offsets(self, consumed: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets to commit with this batch's outputs, given the next offsets consumed."""
        return consumed

    def refused(self, topic: str, partition: int, offset: int) -> bool:
        """The record at `offset` was refused at intake: whether its dead letter is still to be
        written (False for a record read before a restart, whose letter was written then). A
        processor that commits below what it read notes the offset here, so the progress it logs
        in this transaction covers the letter written in it."""
        return True

    def read_to_end(self, partitions: set[TopicPartition], now: float) -> None:
        """Called before `tick`: the owned partitions whose records this batch read to their end,
        as far as the latest fetch responses tell (the others have records not handed to us yet)."""

    async def close(self) -> None:
        """Release models and clients."""


class StreamRunner:
    """Runs one `Processor` under one consumer group with one transactional producer."""

    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        *,
        group_id: str,
        decode_context: DecodeContext,
    ) -> None:
        self._settings = settings
        self._processor = processor
        self._group_id = group_id
        self._decode_context = decode_context
        self._models = dict(processor.input_models())
        self._lock = asyncio.Lock()
        self._owned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._partitions: dict[str, int] = {}  # topic -> partition count, for `intake.admit`
        self._generation = 0  # bumped by every rebalance: a batch fetched before one is stale
        self._consumer: AIOKafkaConsumer | None = None
        self.transactional_id = f"{group_id}-{settings.runtime.instance_id}"
        self.committed_batches = 0
        self._lag_exported_at = float("-inf")
        # Past max_poll_interval the broker has evicted us anyway: a loop that slow is not live.
        self.health = Health(stale_after_s=settings.runtime.max_poll_interval_ms / 1000.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set; commit everything handled; close the clients."""
        runtime = self._settings.runtime
        limit = self._decode_context.max_record_bytes
        producer = kafka.transactional_producer(self._settings.kafka, runtime, self.transactional_id, limit)
        self.health.beat()
        try:
            if not await kafka.start(producer, self._settings.kafka, wait_s=runtime.broker_wait_s, stop=stop):
                return
            consumer = self._consumer = kafka.consumer(
                self._settings.kafka,
                runtime,
                *self._models,
                group_id=self._group_id,
                listener=_Listener(self),
                record_limit=limit,
            )
            try:
                if await kafka.start(consumer, self._settings.kafka, wait_s=runtime.broker_wait_s, stop=stop):
                    await self._loop(consumer, producer, stop)
            finally:
                await consumer.stop()
        finally:
            self.health.stop()
            await producer.stop()
            await self._processor.close()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        runtime = self._settings.runtime
        batch_size = self._processor.batch_size or runtime.batch_size
        log.info("runner_started", group_id=self._group_id, topics=sorted(self._models), batch_size=batch_size)
        interval_s = runtime.min_transaction_interval_ms / 1000.0
        handed_at = float("-inf")
        while not stop.is_set():
            self.health.beat()
            self._apply_backpressure(consumer)
            generation = self._generation
            if (pause := pacing_pause(handed_at, interval_s, time.monotonic())) > 0:
                # Not fetching meanwhile: records gather on the broker and in the fetcher's buffer
                # (which refetches a partition only once its records are taken), not one by one.
                await asyncio.sleep(pause)
            batch = await fetch(consumer, batch_size, runtime.batch_wait_ms)
            if 0 < sum(len(records) for records in batch.values()) < batch_size:
                handed_at = time.monotonic()
            async with self._lock:
                if generation != self._generation:
                    # A rebalance happened during the fetch: handle none of its records. Some were
                    # fetched before it (the rebalance rewound their partitions: they come again),
                    # some after it, from the committed offsets (the position is now past them).
                    # Rewinding every owned partition of the batch to its committed offset covers
                    # both: each record is handled once, after the rebalance.
                    await self._rewind(consumer, {tp for tp, records in batch.items() if records})
                    batch = {}
                await self._handle(batch, consumer, producer)
            await self._export_lag(consumer)
        log.info("runner_stopped", group_id=self._group_id, batches=self.committed_batches)

    async def _rewind(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Seek owned `partitions` back to their committed offsets (the start without one)."""
        for tp in partitions & self._owned:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    async def _handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], consumer: AIOKafkaConsumer, producer: AIOKafkaProducer
    ) -> None:
        tier = self._processor.tier
        owned = {tp: recs for tp, recs in batch.items() if tp in self._owned and recs}
        records, outputs = self._decode(owned)
        now = time.time()
        started = time.perf_counter()
        if records:
            metrics.BATCH_SIZE.labels(tier).observe(len(records))
            outputs += await self._processor.process(records, now)
        self._processor.read_to_end(await at_end(consumer, self._owned), now)
        outputs += await self._processor.tick(now)
        metrics.STAGE_SECONDS.labels(tier, "process").observe(time.perf_counter() - started)
        offsets = self._processor.commit_offsets({tp: recs[-1].offset + 1 for tp, recs in owned.items()})
        if outputs or offsets:
            await self._commit(producer, outputs, offsets)

    def _decode(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> tuple[list[Record[Any]], list[Output]]:
        records: list[Record[Any]] = []
        dead: list[Output] = []
        context = self._decode_context
        for tp, raw_records in batch.items():
            model = self._models[tp.topic]
            partitions = self._partitions.get(tp.topic)
            metrics.RECORDS_IN.labels(self._processor.tier, tp.topic).inc(len(raw_records))
            if model is RawValue:
                records += [
                    Record(
                        raw.topic, raw.partition, raw.offset, raw.key, raw.value, raw.timestamp, raw.value, raw.headers
                    )
                    for raw in raw_records
                ]
                continue
            for raw in raw_records:
                try:
                    value = intake.admit(raw.value, raw.key, raw.partition, model, context, partitions)
                except DecodeError as exc:
                    if self._processor.refused(raw.topic, raw.partition, raw.offset):
                        dead += self._refuse(raw, exc)
                    continue
                records.append(
                    Record(
                        raw.topic,
                        raw.partition,
                        raw.offset,
                        raw.key,
                        value,
                        raw.timestamp,
                        raw.value,
                        raw.headers,
                    )
                )
        return records, dead

    def _refuse(self, raw: ConsumerRecord, exc: DecodeError) -> list[Output]:
        """A dead letter if this tier owns the topic's letters, else nothing (counted)."""
        tier = self._processor.tier
        if not self._processor.owns_dead_letters(raw.topic):
            metrics.SKIPPED_RECORDS.labels(tier, raw.topic, exc.kind).inc()
            return []
        source = DeadLetterSource(raw.topic, raw.partition, raw.offset, raw.key, raw.value, raw.headers)
        dlq = self._settings.topics.dlq(raw.topic)
        return [
            dead_letter(dlq, tier, source, exc.kind, str(exc), max_message_bytes=self._decode_context.max_message_bytes)
        ]

    async def _commit(
        self, producer: AIOKafkaProducer, outputs: list[Output], offsets: dict[TopicPartition, int]
    ) -> None:
        started = time.perf_counter()
        try:
            async with producer.transaction():
                await produce(producer, outputs)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self._group_id)
        except KafkaError as exc:
            raise FatalError(
                f"transaction failed ({exc!r}); exiting so a restart resumes from committed offsets"
            ) from exc
        metrics.STAGE_SECONDS.labels(self._processor.tier, "commit").observe(time.perf_counter() - started)
        for topic, count in Counter(out.topic for out in outputs).items():
            metrics.RECORDS_OUT.labels(self._processor.tier, topic).inc(count)
        self.committed_batches += 1

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Consumer lag per owned partition (high watermark minus position), once a second."""
        now = time.monotonic()
        if now - self._lag_exported_at < 1.0:
            return
        self._lag_exported_at = now
        for tp in self._owned:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - await consumer.position(tp))
                metrics.CONSUMER_LAG.labels(self._processor.tier, self._group_id, tp.topic, str(tp.partition)).set(lag)

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        wanted = self._processor.paused_partitions(self._owned) & self._owned
        if wanted - self._paused:
            consumer.pause(*(wanted - self._paused))
        if self._paused - wanted:
            consumer.resume(*(self._paused - wanted & self._owned))
        self._paused = wanted

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.health.revoking()
        async with self._lock:  # wait for the in-flight transaction: its offsets are ours to commit
            self._generation += 1
            self._owned -= revoked
            self._paused -= revoked
            await self._processor.revoked(revoked)
        metrics.forget_lag(self._processor.tier, self._group_id, ((tp.topic, tp.partition) for tp in revoked))
        log.info("partitions_revoked", partitions=_names(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._consumer is not None:
            for topic in {tp.topic for tp in assigned}:
                self._partitions[topic] = len(self._consumer.partitions_for_topic(topic) or ())
        async with self._lock:
            self._generation += 1
            await self._processor.assigned(assigned)
            self._owned |= assigned
        self.health.assigned(len(self._owned))
        log.info("partitions_assigned", partitions=_names(assigned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner._on_assigned(set(assigned))


def pacing_pause(handed_at: float, interval_s: float, now: float) -> float:
    """Seconds to wait before the next fetch, when the last non-full batch was handed over at
    `handed_at` and transactions are paced `interval_s` apart (`runtime.min_transaction_interval_ms`)."""
    return max(0.0, handed_at + interval_s - now)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


async def serve(
    settings: Settings,
    processor: Processor,
    *,
    group_id: str,
    decode_context: DecodeContext,
    stop: asyncio.Event | None = None,
) -> None:
    """Expose metrics and health; run `processor` until `stop` is set, or until SIGINT/SIGTERM."""
    metrics.serve_metrics(settings.metrics_port)
    runner = StreamRunner(settings, processor, group_id=group_id, decode_context=decode_context)
    health_server = serve_health(runner.health, settings.health_port)
    try:
        if stop is not None:
            await runner.run(stop)
        else:
            await run_until_signalled(runner.run)
    finally:
        if health_server is not None:
            health_server.close()
