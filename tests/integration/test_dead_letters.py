"""Bad input never stops a tier: it lands in `<topic>.dlq` with its original bytes, once."""

from __future__ import annotations

import base64
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import aggregator_main, worker_main
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DeadLetter, Item, VoteBatch


async def test_garbage_wrong_schema_and_overlong_text_go_to_dlq(kafka_bootstrap: str) -> None:
    """Garbage bytes, wrong-schema JSON and an over-long text between good items on one partition:
    the worker steps over them (no letter of its own), the aggregator dead-letters each once with
    its original bytes and position; the good items get their votes."""
    settings = isolated_settings(kafka_bootstrap, max_text_chars=500, topics={"partitions": 1})
    await make_topics(settings)
    topic = settings.topics.items_topic
    bad = [
        (b"bad-0", b"\xff\xfe not json at all \x00"),
        (b"w-1", b'{"id": "w-1", "body": "wrong field names", "task": "sentiment"}'),
        (b"long-1", encode(Item(id="long-1", text="x" * 501, task="sentiment"))),
    ]
    good = [Item(id=f"ok-{n}", text=f"fine text {n}", task="sentiment", metadata={"w1": "positive"}) for n in range(4)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        # One partition, bad records between good ones, so the tiers must step over them.
        sequence = [(key(good[0].id), encode(good[0])), bad[0], (key(good[1].id), encode(good[1])), bad[1],
                    (key(good[2].id), encode(good[2])), bad[2], (key(good[3].id), encode(good[3]))]  # fmt: skip
        for record_key, value in sequence:
            await producer.send_and_wait(topic, value, key=record_key)
    finally:
        await producer.stop()

    async with running(worker_main(settings, "w1"), aggregator_main(settings)):
        batches = await read_topic(
            settings, settings.topics.votes_topic, VoteBatch, until=lambda rs: sum(len(b.votes) for b in rs) >= 4
        )
        await read_topic(settings, settings.topics.dlq(topic), until=lambda rs: len(rs) >= 3)
    letters = await read_topic(settings, settings.topics.dlq(topic), DeadLetter)

    votes = [vote for batch in batches for vote in batch.expand()]
    assert sorted(v.item_id for v in votes) == [g.id for g in good]
    assert all(v.label == "positive" for v in votes)
    assert [base64.b64decode(d.value_b64 or "") for d in letters] == [v for _, v in bad], "original bytes, in order"
    assert [d.offset for d in letters] == [1, 3, 5]
    assert all(d.source_topic == topic and d.partition == 0 and d.tier == "aggregator" for d in letters)
    assert [d.error_kind for d in letters] == ["decode"] * 3
    assert "not JSON" in letters[0].error_message
    assert "text" in letters[1].error_message
    assert "501 characters" in letters[2].error_message
    assert [base64.b64decode(d.key_b64 or "") for d in letters] == [k for k, _ in bad]


async def test_items_poison_to_a_model_are_voted_abstain_and_dead_lettered(kafka_bootstrap: str) -> None:
    """Errors steer: a label outside the set (poison) and a batch that keeps failing (retries spent)
    both end as an abstain vote plus one dead letter with the reason and the item's bytes."""
    # One partition: the items are sent to partition 0, where their keys hash with one partition.
    settings = isolated_settings(
        kafka_bootstrap, runtime={"retries": 1, "retry_backoff_ms": 0}, topics={"partitions": 1}
    )
    await make_topics(settings)
    topic = settings.topics.items_topic
    scripts = {"ok-1": "positive", "bad-label": "meh", "ok-2": "negative", "bad-batch": "!fail"}
    items = [Item(id=i, text=f"text of {i}", task="sentiment", metadata={"w1": s}) for i, s in scripts.items()]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for item in items:
            await producer.send_and_wait(topic, encode(item), key=key(item.id), partition=0)
    finally:
        await producer.stop()

    async with running(worker_main(settings, "w1")):
        batches = await read_topic(
            settings, settings.topics.votes_topic, VoteBatch, until=lambda rs: sum(len(b.votes) for b in rs) >= 4
        )
        letters = await read_topic(settings, settings.topics.dlq(topic), DeadLetter, until=lambda rs: len(rs) >= 2)

    labels = {v.item_id: v.label for batch in batches for v in batch.expand()}
    assert labels == {"ok-1": "positive", "bad-label": None, "ok-2": "negative", "bad-batch": None}
    by_item = {base64.b64decode(letter.key_b64 or ""): letter for letter in letters}
    assert set(by_item) == {b"bad-label", b"bad-batch"}
    assert {letter.error_kind for letter in letters} == {"model_poison"}
    assert "outside the label set" in by_item[b"bad-label"].error_message
    assert "w1" in by_item[b"bad-batch"].error_message
    original = {item.id: encode(item) for item in items}
    for item_id, letter in by_item.items():
        assert base64.b64decode(letter.value_b64 or "") == original[item_id.decode()]


async def test_a_bad_record_re_read_after_a_restart_is_lettered_once(kafka_bootstrap: str) -> None:
    """The aggregator commits items only up to its oldest undecided one, so a restart re-reads a
    bad record after it: its letter from before the restart is the only one (chaos once found a
    hostile record lettered twice: the bad record was the last one its transaction read)."""
    settings = isolated_settings(kafka_bootstrap, topics={"partitions": 1}, aggregator={"deadline_ms": 600_000})
    await make_topics(settings)
    topic, dlq = settings.topics.items_topic, settings.topics.dlq(settings.topics.items_topic)
    undecided = Item(id="undecided", text="no worker runs, so this waits", task="sentiment")

    async def send(*records: tuple[bytes, bytes]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for record_key, value in records:
                await producer.send_and_wait(topic, value, key=record_key, partition=0)
        finally:
            await producer.stop()

    def lettered(record_key: bytes) -> Callable[[list[DeadLetter]], bool]:
        return lambda letters: any(base64.b64decode(d.key_b64 or "") == record_key for d in letters)

    await send((key(undecided.id), encode(undecided)), (b"bad-before", b"\xff not json"))
    async with running(aggregator_main(settings)):
        await read_topic(settings, dlq, DeadLetter, until=lettered(b"bad-before"))
    await send((b"bad-after", b"\xfe not json either"))
    async with running(aggregator_main(settings)):  # re-reads from `undecided`: past bad-before
        await read_topic(settings, dlq, DeadLetter, until=lettered(b"bad-after"))
    letters = await read_topic(settings, dlq, DeadLetter)
    assert [(base64.b64decode(d.key_b64 or ""), d.offset) for d in letters] == [(b"bad-before", 1), (b"bad-after", 2)]
