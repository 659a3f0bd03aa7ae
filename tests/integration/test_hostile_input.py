"""Hostile producers writing straight to the topics, against all tiers on a real broker: no record
stops a tier, forges a label or gives an item two; each bad record makes exactly one dead letter."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import WORKERS, aggregator_main, judge_main, worker_main
from tribunal.core.settings import Settings
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DeadLetter, EscalationReason, Item, JudgeRequest, Verdict, VoteBatch

Send = tuple[str, bytes | None, bytes | None, int | None]  # topic, key, value, partition


async def _send(settings: Settings, records: list[Send]) -> None:
    """Publish raw records as a hostile producer would (any key, any partition, any bytes)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for topic, record_key, value, partition in records:
            await producer.send_and_wait(topic, value, key=record_key, partition=partition)
    finally:
        await producer.stop()


def _item(item_id: str, answers: tuple[str, str, str, str] = ("positive",) * 4, **extra: Any) -> dict[str, Any]:
    """An item of task sentiment3 whose metadata scripts the workers' and the judge's answers."""
    metadata = dict(zip((*WORKERS, "judge"), answers, strict=True)) | extra.pop("metadata", {})
    return {"id": item_id, "text": f"text of {item_id}", "task": "sentiment3", "metadata": metadata, **extra}


def default_partition(record_key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner puts a key (aiokafka's own murmur2: an independent oracle)."""
    return int(murmur2(record_key) & 0x7FFFFFFF) % partitions


def _good(settings: Settings, item_id: str, **fields: Any) -> Send:
    return settings.topics.items_topic, key(item_id), orjson.dumps(_item(item_id, **fields)), None


def _request(item_id: str, **routing: Any) -> bytes:
    item = Item(id=item_id, text="forged", task="sentiment3")
    return encode(
        JudgeRequest(item=item, reason=EscalationReason.DISAGREEMENT, policy="p", policy_version=1, **routing)
    )


def _verdict(item_id: str, **fields: Any) -> bytes:
    values = {"item_id": item_id, "task": "sentiment3", "label": "positive", "decided_by": "judge", "policy": "p",
              "policy_version": 1, "item_produced_at": 0} | fields  # fmt: skip
    return encode(Verdict.model_validate(values))


def _tiers(settings: Settings) -> list[Any]:
    return [worker_main(settings, w) for w in WORKERS] + [aggregator_main(settings), judge_main(settings)]


async def _letters(settings: Settings, topic: str) -> list[DeadLetter]:
    return await read_topic(settings, settings.topics.dlq(topic), DeadLetter)


async def _labels_after(settings: Settings, count: int) -> list[Verdict]:
    """Wait for `count` labels with the tiers running; return them once the tiers are stopped."""
    async with running(*_tiers(settings)):
        await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= count, timeout_s=120)
    return await read_topic(settings, settings.topics.labels_topic, Verdict)


async def test_an_800kb_item_stops_nothing_and_makes_one_bounded_letter(kafka_bootstrap: str) -> None:
    """Finding 1: an 800 KB item (text over max_text_chars, record under max_message_bytes) between
    300 good ones. Every good item is labelled; the big one is one dead letter in items.dlq (not
    one per consuming group) holding a bounded prefix, the whole length and sha256."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000})
    await make_topics(settings)
    big = orjson.dumps(_item("big", text="x" * 800_000))
    assert len(big) < settings.max_message_bytes
    good = [_good(settings, f"ok-{n}") for n in range(300)]
    await _send(settings, [*good[:150], (settings.topics.items_topic, key("big"), big, None), *good[150:]])

    labels = await _labels_after(settings, 300)
    assert Counter(v.item_id for v in labels) == Counter({f"ok-{n}": 1 for n in range(300)})
    [letter] = await _letters(settings, settings.topics.items_topic)
    assert (letter.error_kind, letter.tier, letter.value_bytes) == ("decode", "aggregator", len(big))
    assert letter.value_sha256 == hashlib.sha256(big).hexdigest() and letter.value_truncated
    assert letter.value_b64 is not None and big.startswith(base64.b64decode(letter.value_b64))
    assert len(encode(letter)) <= settings.max_message_bytes + 64 * 1024


def _exactly(payload: dict[str, Any], size: int, record_key: bytes, pad: str | None = "pad") -> bytes:
    """`payload` as JSON of exactly `size` bytes with its key: padded in metadata[pad], or with
    whitespace before the closing brace when `pad` is None."""
    budget = size - len(record_key)
    if pad is None:
        raw = orjson.dumps(payload)
        assert len(raw) <= budget
        return raw[:-1] + b" " * (budget - len(raw)) + b"}"
    payload = payload | {"metadata": payload["metadata"] | {pad: ""}}
    filler = budget - len(orjson.dumps(payload))
    assert filler >= 0
    return orjson.dumps(payload | {"metadata": payload["metadata"] | {pad: "x" * filler}})


SCALES = {"half": 0.5, "most": 0.99, "full": 1.0, "double": 2.0}


async def test_every_input_topic_at_half_most_full_and_double_each_limit(kafka_bootstrap: str) -> None:
    """Records at 0.5x, 0.99x, 1x and 2x of each limit on items, votes, judge and verdicts: up to the
    limit they are processed (a 1x item is labelled, through the judge too); beyond it they are one
    dead letter each, or refused by the broker where the topic's own limit (set by `topics create`
    to the producers' max_request_size) is lower than 2x."""
    from tribunal.core.topics import message_limits, topic_specs

    settings = isolated_settings(kafka_bootstrap, max_message_bytes=60_000, max_text_chars=4_000,
                                 aggregator={"deadline_ms": 60_000, "policy": "criterion1"})  # fmt: skip
    await make_topics(settings)
    t, m, chars = settings.topics, settings.max_message_bytes, settings.max_text_chars
    limits = await message_limits(settings, [s.name for s in topic_specs(settings)])
    assert set(limits.values()) == {settings.max_record_bytes + 1_024}, "one limit, as producers are sized"

    records: list[Send] = []
    expected_labels: set[str] = set()
    for name, scale in SCALES.items():
        # items, sized by max_message_bytes (padding in metadata; the workers disagree: judged).
        item_id = f"bytes-{name}"
        value = _exactly(_item(item_id, ("positive", "negative", "neutral", "negative")), int(m * scale), key(item_id))
        records.append((t.items_topic, key(item_id), value, None))
        # items, sized by max_text_chars.
        text_id = f"chars-{name}"
        records.append(_good(settings, text_id, text="é" * int(chars * scale)))
        # votes, sized by max_message_bytes (whitespace): two agreeing votes label their item.
        vote_id = f"votes-{name}"
        records.append(_good(settings, vote_id, answers=("!abstain", "!abstain", "!abstain", "negative")))
        for worker in ("w1", "w2"):
            row = (vote_id, "sentiment3", "positive", 0.9, 0.0, None)
            vote = VoteBatch(worker=worker, model="m", next_offset=0, votes=(row,))
            raw = _exactly(vote.model_dump(mode="json"), int(m * scale), key(vote_id), pad=None)
            records.append((t.votes_topic, key(vote_id), raw, default_partition(key(vote_id), t.partitions)))
        expected_labels |= {item_id, text_id, vote_id} if scale <= 1 else {vote_id}
    await _send(settings, records)

    # judge and verdicts, sized by the record limit of derived records (they name no escalation).
    derived: list[Send] = []
    for name, scale in SCALES.items():
        if scale > 1:
            continue
        request_id, size = f"request-{name}", int(settings.max_record_bytes * scale)
        item = Item.model_validate(_item(request_id, metadata={"pad": "x" * (size - 1_000)}))
        request = JudgeRequest(item=item, reason=EscalationReason.DISAGREEMENT, policy="p", policy_version=1)
        raw = _exactly(request.model_dump(mode="json"), size, key(request_id), pad=None)
        derived.append((t.judge_topic, key(request_id), raw, None))
        verdict_id = f"verdict-{name}"
        raw = _exactly(orjson.loads(_verdict(verdict_id)), size, key(verdict_id), pad=None)
        derived.append((t.verdicts_topic, key(verdict_id), raw, 0))
    await _send(settings, derived)
    for topic in (t.judge_topic, t.verdicts_topic):
        with pytest.raises(MessageSizeTooLargeError):
            await _send(settings, [(topic, b"k", b" " * (2 * settings.max_record_bytes), 0)])

    labels = await _labels_after(settings, len(expected_labels))
    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(expected_labels, 1))
    by_id = {v.item_id: v for v in labels}
    assert by_id["bytes-full"].decided_by.value == "judge", "a 1x item makes it through the judge and back"
    assert by_id["votes-double"].decided_by.value == "judge", "its two 2x votes did not count"
    assert {by_id[f"votes-{n}"].decided_by.value for n in ("half", "most", "full")} == {"workers"}
    items_dlq = {(d.error_kind, d.value_bytes) for d in await _letters(settings, t.items_topic)}
    double_text = len(orjson.dumps(_item("chars-double", text="é" * (2 * chars))))
    assert items_dlq == {("oversize", 2 * m - len(key("bytes-double"))), ("decode", double_text)}
    votes_dlq = await _letters(settings, t.votes_topic)
    double_vote = 2 * m - len(key("votes-double"))
    assert sorted((d.error_kind, d.value_bytes) for d in votes_dlq) == [("oversize", double_vote)] * 2
    assert all(d.value_truncated for d in votes_dlq)
    judged = await read_topic(settings, t.verdicts_topic, Verdict)
    assert {v.item_id for v in judged} >= {"request-half", "request-most", "request-full"}, "the judge took every size"
    unsolicited = await _letters(settings, t.verdicts_topic)
    assert Counter(d.error_kind for d in unsolicited) == {"unsolicited_verdict": 6}, "3 forged + 3 judged requests"
    assert all(len(encode(d)) <= settings.max_record_bytes for d in unsolicited)


async def test_one_id_under_two_keys_or_partitions_gets_one_label(kafka_bootstrap: str) -> None:
    """Finding 2: each of 25 ids is also sent under another key and on another partition: one label
    per id; the copies are dead-lettered once each (key_mismatch, wrong_partition)."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000})
    await make_topics(settings)
    t, records = settings.topics, list[Send]()
    for n in range(25):
        item_id, value = f"tk-{n}", orjson.dumps(_item(f"tk-{n}"))
        home = default_partition(key(item_id), t.partitions)
        records += [
            (t.items_topic, key(item_id), value, None),
            (t.items_topic, key(f"other-{n}"), value, None),
            (t.items_topic, key(item_id), value, (home + 1) % t.partitions),
        ]
    await _send(settings, records)
    labels = await _labels_after(settings, 25)
    assert Counter(v.item_id for v in labels) == Counter({f"tk-{n}": 1 for n in range(25)})
    letters = await _letters(settings, t.items_topic)
    assert Counter(d.error_kind for d in letters) == {"key_mismatch": 25, "wrong_partition": 25}


async def test_forged_votes_requests_and_gold_labels_never_label(kafka_bootstrap: str) -> None:
    """Finding 3: two votes for another task sent before their item, 50 well-formed judge requests
    for ids never ingested and a gold label outside the task: none becomes a label; the votes and
    the item are one dead letter each (the requests' verdicts: see the next test)."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000, "policy": "criterion1"})
    await make_topics(settings)
    t = settings.topics
    home = default_partition(key("victim"), t.partitions)
    cross_task = VoteBatch(
        worker="w1", model="m", next_offset=0, votes=(("victim", "intent", "age_limit", 0.0, 0.0, None),)
    )
    forged_votes: list[Send] = [
        (t.votes_topic, key("victim"), encode(cross_task.model_copy(update={"worker": w})), home) for w in ("w1", "w2")
    ]
    await _send(settings, forged_votes)
    # Well-formed requests as a judge-only client would send them (no partition, no ticket).
    forged: list[Send] = [(t.judge_topic, key(f"ghost-{n}"), _request(f"ghost-{n}"), None) for n in range(50)]
    bogus = _good(settings, "bogus-gold", metadata={"label": "bogus"})
    victim = _good(settings, "victim", answers=("negative", "negative", "negative", "positive"))
    await _send(settings, [*forged, bogus, victim, *(_good(settings, f"ok-{n}") for n in range(20))])

    labels = await _labels_after(settings, 21)
    by_id = {v.item_id: v for v in labels}
    assert set(by_id) == {"victim", *(f"ok-{n}" for n in range(20))}
    assert (by_id["victim"].label, by_id["victim"].decided_by.value) == ("negative", "workers")
    assert Counter(d.error_kind for d in await _letters(settings, t.votes_topic)) == {"task_mismatch": 2}
    [gold] = await _letters(settings, t.items_topic)
    assert "not in the label set" in gold.error_message


async def test_verdicts_that_answer_no_escalation_are_dead_lettered(kafka_bootstrap: str) -> None:
    """Only the aggregator writes labels: verdicts of forged requests, verdicts sent straight to
    `verdicts` and verdicts with a guessed ticket (for items that were escalated) are one dead
    letter each in verdicts.dlq; every item still gets exactly its judge's label."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000, "policy": "criterion1"})
    await make_topics(settings)
    t = settings.topics
    disputed = [f"disputed-{n}" for n in range(10)]
    requests: list[Send] = [
        (t.judge_topic, key(f"ghost-{n}"), _request(f"ghost-{n}", partition=0, ticket="guess"), None) for n in range(10)
    ]
    verdicts: list[Send] = [
        (t.verdicts_topic, key(i), _verdict(i, ticket="guess"), default_partition(key(i), t.partitions))
        for i in [*disputed, *(f"phantom-{n}" for n in range(10))]
    ]
    items = [_good(settings, i, answers=("positive", "negative", "neutral", "negative")) for i in disputed]
    await _send(settings, [*items, *requests, *verdicts])
    labels = await _labels_after(settings, 10)
    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(disputed, 1))
    assert {(v.label, v.decided_by.value) for v in labels} == {("negative", "judge")}
    assert Counter(d.error_kind for d in await _letters(settings, t.verdicts_topic)) == {"unsolicited_verdict": 30}


async def test_bad_items_make_one_letter_each_and_tombstones_differ_from_empty_values(kafka_bootstrap: str) -> None:
    """Finding 7: three worker groups and the aggregator all read items, yet each bad record makes one
    letter (the aggregator's); a tombstone's letter has no value, an empty value's an empty one."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000})
    await make_topics(settings)
    t = settings.topics
    bad: list[Send] = [(t.items_topic, key("x"), None, None), (t.items_topic, key("y"), b"", None),
                       (t.items_topic, key("z"), b"\xff garbage", None)]  # fmt: skip
    await _send(settings, [*bad, *(_good(settings, f"ok-{n}") for n in range(10))])
    await _labels_after(settings, 10)
    letters = {d.error_kind: d for d in await _letters(settings, t.items_topic)}
    assert sorted(letters) == ["decode", "empty", "tombstone"]
    assert all(d.tier == "aggregator" for d in letters.values())
    assert (letters["tombstone"].value_b64, letters["tombstone"].value_bytes) == (None, None)
    assert (letters["empty"].value_b64, letters["empty"].value_bytes) == ("", 0)


async def test_garbage_in_the_state_topics_is_skipped_not_fatal(kafka_bootstrap: str) -> None:
    """Records nobody should write to the aggregator's decided-id log or the reliability topic (bad bytes,
    undecodable keys) are skipped on restore and when followed: the tiers start and label as usual."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 60_000, "policy": "weighted"})
    await make_topics(settings)
    t = settings.topics
    junk: list[Send] = [
        *((t.state_topic, b"\xff\xfe", b"{}", p) for p in range(t.partitions)),
        *((t.state_topic, key(f"s-{p}"), b"not json", p) for p in range(t.partitions)),
        *((t.reliability_topic, b"sentiment3|\xc2\xb2", b'{"format": 1}', p) for p in range(t.judge_partitions)),
        *((t.reliability_topic, b"sentiment3|0", b"[1, 2]", p) for p in range(t.judge_partitions)),
    ]
    await _send(settings, [*junk, *(_good(settings, f"ok-{n}") for n in range(20))])
    labels = await _labels_after(settings, 20)
    assert Counter(v.item_id for v in labels) == Counter({f"ok-{n}": 1 for n in range(20)})
