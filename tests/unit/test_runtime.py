"""The runtime: its decoding step (good records pass, bad ones become dead letters with their
bytes), its consume loop around rebalances, and transaction pacing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from tribunal.core import kafka
from tribunal.core.batches import Output
from tribunal.core.errors import BrokerUnavailableError
from tribunal.core.records import Record
from tribunal.core.runtime import Processor, StreamRunner, pacing_pause
from tribunal.core.settings import load_settings
from tribunal.schemas import DeadLetter, Item, decode, encode

SETTINGS = load_settings(topics={"prefix": "r-"})


class Echo(Processor):
    tier = "echo"

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {"r-items": Item}

    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        return []


class Skipper(Echo):
    """A tier that leaves the dead letters of its input to another tier (as workers do for items)."""

    def owns_dead_letters(self, topic: str) -> bool:
        return False


class FakeConsumer:
    """A consumer of one partition whose end is `end` (None: not known yet): what the runtime asks
    of aiokafka besides the fetch itself, which each test writes."""

    def __init__(self, tp: TopicPartition, end: int | None) -> None:
        self.tp, self.end = tp, end

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def paused(self) -> set[TopicPartition]:
        return set()

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.end

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.end

    async def position(self, tp: TopicPartition) -> int:
        return self.end or 0

    def pause(self, *tps: TopicPartition) -> None: ...

    def resume(self, *tps: TopicPartition) -> None: ...


class FakeProducer:
    """A transactional producer that records what each transaction sends (topics, offsets)."""

    def __init__(self, sent: list[Any]) -> None:
        self.sent = sent

    @contextlib.asynccontextmanager
    async def transaction(self) -> Any:
        yield

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> Any:
        class Batch:
            def append(self, key: bytes | None, value: bytes | None, timestamp: int | None, headers: Any) -> object:
                return object()

        return Batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> None:
        self.sent.append(topic)

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group: str) -> None:
        self.sent.append(offsets)


def _raw(offset: int, value: bytes | None, key: bytes | None = b"a") -> ConsumerRecord[bytes, bytes]:
    size = len(value) if value is not None else 0
    return ConsumerRecord("r-items", 2, offset, 0, 0, key, value, None, len(key or b""), size, ())


def test_decode_splits_good_records_from_dead_letters() -> None:
    """Valid records decode in order; garbage becomes a DeadLetter for <topic>.dlq with source position and bytes."""
    runner = StreamRunner(SETTINGS, Echo(), group_id="g", decode_context=SETTINGS.decode_context())
    good = encode(Item(id="a", text="fine"))
    records, dead = runner._decode({TopicPartition("r-items", 2): [_raw(0, good), _raw(1, b"\x00junk"), _raw(2, good)]})
    assert [r.offset for r in records] == [0, 2] and records[0].value.id == "a" and records[0].raw == good
    [letter_out] = dead
    letter = decode(letter_out.value, DeadLetter)
    assert letter_out.topic == "r-items.dlq" and letter_out.key == b"a"
    assert (letter.source_topic, letter.partition, letter.offset, letter.tier) == ("r-items", 2, 1, "echo")
    assert letter.value_b64 is not None and base64.b64decode(letter.value_b64) == b"\x00junk"
    assert "not JSON" in letter.error_message


def test_a_record_keyed_by_another_id_is_refused() -> None:
    """An item whose key is not its id is a dead letter of kind key_mismatch, not an item."""
    runner = StreamRunner(SETTINGS, Echo(), group_id="g", decode_context=SETTINGS.decode_context())
    good = encode(Item(id="a", text="fine"))
    records, dead = runner._decode({TopicPartition("r-items", 2): [_raw(0, good, key=b"other")]})
    assert records == [] and decode(dead[0].value, DeadLetter).error_kind == "key_mismatch"


def test_a_tier_that_does_not_own_the_letters_skips_and_counts() -> None:
    """Bad records are skipped without a letter by a tier that does not own the topic's letters, and counted."""
    from tribunal.core.metrics import SKIPPED_RECORDS

    runner = StreamRunner(SETTINGS, Skipper(), group_id="g", decode_context=SETTINGS.decode_context())
    before = SKIPPED_RECORDS.labels("echo", "r-items", "tombstone")._value.get()
    records, dead = runner._decode({TopicPartition("r-items", 2): [_raw(0, None), _raw(1, b"")]})
    assert records == [] and dead == []
    assert SKIPPED_RECORDS.labels("echo", "r-items", "tombstone")._value.get() == before + 1


def test_transactional_id_is_stable_per_instance() -> None:
    """The transactional id is the group plus the instance id, so a restart fences its predecessor."""
    runner = StreamRunner(SETTINGS, Echo(), group_id="g", decode_context=SETTINGS.decode_context())
    assert runner.transactional_id == f"g-{SETTINGS.runtime.instance_id}"


async def test_a_partition_rewound_between_fetches_is_not_handled_twice() -> None:
    """A rebalance between two getmany calls of one batch rewinds the partition to its committed
    offset: the records fetched again are kept once, in order."""
    from tribunal.core.batches import fetch

    tp = TopicPartition("r-items", 2)
    good = encode(Item(id="a", text="fine"))

    calls = [{tp: [_raw(0, good), _raw(1, good)]}, {tp: [_raw(0, good), _raw(1, good), _raw(2, good)]}]

    class Rewinding(FakeConsumer):
        async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
            return calls.pop(0) if calls else {}

    batch = await fetch(Rewinding(tp, end=3), batch_size=10, wait_ms=1_000)
    assert [r.offset for r in batch[tp]] == [0, 1, 2]


async def test_a_batch_fetched_before_a_rebalance_is_dropped_not_handled() -> None:
    """Records fetched while partitions were revoked and assigned again are not handled, and their
    partitions are rewound to the committed offsets: each record is handled once, after the
    rebalance (whether it was fetched before the rebalance's own rewind or after it)."""
    tp = TopicPartition("r-items", 2)
    settings = load_settings(topics={"prefix": "r-"}, runtime={"batch_wait_ms": 0})  # one getmany per batch
    runner = StreamRunner(settings, Echo(), group_id="g", decode_context=settings.decode_context())
    await runner._on_assigned({tp})
    stop = asyncio.Event()
    sent: list[Any] = []
    rewound: list[tuple[TopicPartition, int]] = []

    class Consumer(FakeConsumer):
        calls = 0

        async def committed(self, tp: TopicPartition) -> int:
            return 0

        def seek(self, tp: TopicPartition, offset: int) -> None:
            rewound.append((tp, offset))

        async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
            if tps:
                return {}  # topping the batch up: nothing more fetched
            self.calls += 1
            if self.calls == 1:  # a rebalance happens while the batch is in our hands
                await runner._on_revoked({tp})
                await runner._on_assigned({tp})
            else:
                stop.set()
            return {tp: [_raw(0, b"\x00junk")]}

    await runner._loop(Consumer(tp, end=None), FakeProducer(sent), stop)
    assert sent == ["r-items.dlq", {tp: 1}], "the letter once, from the batch fetched after the rebalance"
    assert rewound == [(tp, 0)], "the dropped batch's partition is read again from its committed offset"


@given(st.binary(min_size=1, max_size=64), st.integers(1, 50))
def test_partition_for_matches_the_default_partitioner(key: bytes, count: int) -> None:
    """The partition of a keyed record is the default partitioner's."""
    partitions = list(range(count))
    assert kafka.partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


@pytest.mark.parametrize(
    ("handed_at", "interval_s", "now", "pause"),
    [
        (float("-inf"), 0.05, 100.0, 0.0),  # nothing handed over yet
        (100.0, 0.0, 100.0, 0.0),  # unpaced (the default)
        (100.0, 0.05, 100.01, 0.04),
        (100.0, 0.05, 100.05, 0.0),
        (100.0, 0.05, 101.0, 0.0),  # the interval passed while the batch committed
    ],
)
def test_pacing_pause_waits_out_the_rest_of_the_interval(
    handed_at: float, interval_s: float, now: float, pause: float
) -> None:
    assert pacing_pause(handed_at, interval_s, now) == pytest.approx(pause)


@pytest.mark.parametrize(("records", "paced"), [(1, True), (4, False)])
async def test_after_a_batch_that_is_not_full_the_next_fetch_waits_for_the_interval(records: int, paced: bool) -> None:
    """With `min_transaction_interval_ms`, a small batch is followed by a pause before the next
    fetch (records gather meanwhile); a full batch (4 of batch_size 4) is not."""
    tp = TopicPartition("r-items", 2)
    settings = load_settings(
        topics={"prefix": "r-"}, runtime={"batch_wait_ms": 0, "batch_size": 4, "min_transaction_interval_ms": 1000}
    )
    runner = StreamRunner(settings, Echo(), group_id="g", decode_context=settings.decode_context())
    await runner._on_assigned({tp})
    stop = asyncio.Event()
    fetched_at: list[float] = []
    good = encode(Item(id="a", text="fine"))

    class Consumer(FakeConsumer):
        async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
            if tps:
                return {}  # topping the batch up: nothing more fetched
            fetched_at.append(time.monotonic())
            if len(fetched_at) == 2:
                stop.set()
            start = 4 * len(fetched_at)
            return {tp: [_raw(start + n, good) for n in range(records)]}

    sent: list[Any] = []
    await runner._loop(Consumer(tp, end=10), FakeProducer(sent), stop)
    assert len(fetched_at) == 2 and len(sent) == 2, "two batches, each committed"
    gap = fetched_at[1] - fetched_at[0]
    if paced:
        assert gap >= 0.99, f"the second fetch came {gap:.3f} s after the first small batch"
    else:
        assert gap < 0.99, "a full batch goes on at once"


class Unreachable:
    """A client whose broker never answers."""

    def __init__(self) -> None:
        self.starts = self.stops = 0

    async def start(self) -> None:
        self.starts += 1
        raise KafkaConnectionError("connection refused")

    async def stop(self) -> None:
        self.stops += 1


async def test_a_stop_while_waiting_for_a_broker_ends_the_wait() -> None:
    """SIGTERM (the stop event) during the broker wait: the client closed, False, long before
    `wait_s` (60 s here) runs out; without a stop the wait ends in BrokerUnavailableError."""
    client, stop = Unreachable(), asyncio.Event()
    stop.set()
    assert await kafka.start(client, SETTINGS.kafka, wait_s=60.0, stop=stop) is False
    assert (client.starts, client.stops) == (1, 1)
    with pytest.raises(BrokerUnavailableError, match="no Kafka broker answered"):
        await kafka.start(Unreachable(), SETTINGS.kafka, wait_s=0.0, stop=asyncio.Event())


async def test_a_tier_stopped_before_any_broker_answered_returns_and_closes_its_processor() -> None:
    """A real runner against a port where nothing listens, stopped while it waits: it returns
    (exit 0) and releases its processor, instead of waiting out `broker_wait_s`."""
    closed: list[bool] = []

    class Closing(Echo):
        async def close(self) -> None:
            closed.append(True)

    settings = load_settings(topics={"prefix": "r-"}, kafka={"bootstrap_servers": "127.0.0.1:9"},
                             runtime={"broker_wait_s": 600})  # fmt: skip
    stop = asyncio.Event()
    runner = StreamRunner(settings, Closing(), group_id="g", decode_context=settings.decode_context())
    asyncio.get_running_loop().call_later(0.2, stop.set)
    await asyncio.wait_for(runner.run(stop), timeout=30)
    assert closed == [True]
