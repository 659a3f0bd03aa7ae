"""The aggregator's durable bookkeeping and policy choice, without Kafka: the decided-id log,
commit gates, expiry, restore, backpressure, audits, policies per task, verdict encoding."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.aggregator_kit import (
    ITEMS,
    T0,
    VOTES,
    aggregator_settings,
    batch_record,
    item_record,
    new_processor,
    outputs_on,
    replayed_state,
    requests_in,
    tasks_with,
    tick,
    vote_record,
)
from tribunal.consumers.aggregator.processor import AggregatorProcessor, PartitionState
from tribunal.consumers.aggregator.state import Pending
from tribunal.consumers.policy.ballots import Accept, HeldVote
from tribunal.consumers.policy.voting import Majority
from tribunal.consumers.verdicts import verdict_bytes
from tribunal.core.errors import ConfigError
from tribunal.core.records import Record
from tribunal.core.settings import load_settings
from tribunal.schemas.codec import decode, encode
from tribunal.schemas.messages import (
    AggregatorLog,
    DecidedBy,
    Item,
    Verdict,
    Vote,
)


async def test_log_records_decided_ids_and_read_offsets_only() -> None:
    """Each transaction logs, per touched partition, the ids it decided and how far it read; never votes."""
    processor = await new_processor()
    await processor.process([item_record(offset=4), vote_record("w1", "positive", offset=7)], T0)
    [entry] = outputs_on(await tick(processor, T0), "u-aggregator-decided")
    logged = decode(entry.value, AggregatorLog)
    assert (entry.partition, logged.items_to, logged.votes_to, logged.decided) == (0, 5, 8, ())
    await processor.process([vote_record("w2", "positive", offset=8)], T0 + 0.1)
    [entry] = outputs_on(await tick(processor, T0 + 0.1), "u-aggregator-decided")
    assert decode(entry.value, AggregatorLog).decided == (("a", T0 + 0.1),)
    assert outputs_on(await tick(processor, T0 + 0.2), "u-aggregator-decided") == []  # nothing new: no record


async def test_commits_stop_at_the_oldest_undecided_work() -> None:
    """Offsets committed never pass an undecided item or a votes record holding one of its votes."""
    processor = await new_processor()
    await processor.process(
        [item_record("a", offset=4), item_record("b", offset=5), vote_record("w1", "positive", "a", offset=10)], T0
    )
    assert processor.commit_offsets({ITEMS: 6, VOTES: 11}) == {ITEMS: 4, VOTES: 10}
    await processor.process([vote_record("w2", "positive", "a", offset=11)], T0)
    assert processor.commit_offsets({ITEMS: 6, VOTES: 12}) == {ITEMS: 5, VOTES: 12}


async def test_decided_ids_are_capped() -> None:
    """Memory stays bounded: beyond max_decided the oldest decided ids are forgotten first."""
    processor = await new_processor(aggregator_settings(max_decided=2))
    for n in range(3):
        await processor.process(
            [
                item_record(f"i{n}", offset=n),
                vote_record("w1", "positive", f"i{n}"),
                vote_record("w2", "positive", f"i{n}"),
            ],
            T0 + n,
        )
    await tick(processor, T0 + 3)
    again = await processor.process(
        [item_record("i0", offset=9), vote_record("w1", "positive", "i0"), vote_record("w2", "positive", "i0")], T0 + 4
    )
    assert len(outputs_on(again, "u-labels")) == 1  # i0 forgotten: a re-sent i0 is decided again


async def test_orphan_votes_expire_without_a_label() -> None:
    """Votes whose item never arrives are dropped after the window, never labelled."""
    processor = await new_processor()
    await processor.process([vote_record("w1", "positive", "ghost")], T0)
    assert outputs_on(await tick(processor, T0 + 5), "u-judge") == []
    outputs = await tick(processor, T0 + 61)
    assert outputs_on(outputs, "u-judge") == [] and outputs_on(outputs, "u-labels") == []
    assert processor.commit_offsets({VOTES: 1}) == {VOTES: 1}  # no longer holds the votes commit


async def test_restored_decided_ids_ignore_re_read_records() -> None:
    """After a restart, re-read items and votes of decided ids make nothing; re-read bad records are not
    dead-lettered twice."""
    state = PartitionState()
    state.remember("d", T0)
    state.replayed_items, state.replayed_votes = 10, 20
    processor = await new_processor(restored={0: state})
    outputs = await processor.process(
        [item_record("d", offset=3), vote_record("w1", "positive", "d", offset=5)], T0 + 0.1
    )
    assert outputs_on(outputs, "u-labels") == [] and outputs_on(outputs, "u-judge") == []
    assert not processor.refused("u-items", 0, 9) and processor.refused("u-items", 0, 10)
    assert not processor.refused("u-votes", 0, 19) and processor.refused("u-votes", 0, 20)


async def test_a_refused_record_read_last_is_logged_so_a_restart_letters_it_once() -> None:
    """A bad record read after an undecided item (the commit stays below both) and last in its
    partition: this transaction's log record covers it, so the restart that re-reads it writes no
    second letter (chaos once found one hostile record with two)."""
    processor = await new_processor()
    await processor.process([item_record("a", offset=3), vote_record("w1", "positive", offset=5)], T0)
    assert processor.refused("u-items", 0, 4) and processor.refused("u-votes", 0, 6)
    outputs = await tick(processor, T0)
    assert processor.commit_offsets({ITEMS: 5, VOTES: 7}) == {ITEMS: 3, VOTES: 5}  # both re-read after a restart
    restarted = await new_processor(restored={0: replayed_state(outputs)})
    assert not restarted.refused("u-items", 0, 4) and not restarted.refused("u-votes", 0, 6)
    assert restarted.refused("u-items", 0, 5) and restarted.refused("u-votes", 0, 7)


async def test_a_refused_record_alone_in_a_transaction_is_logged_too() -> None:
    """A transaction that read nothing but a bad record still logs how far it read."""
    processor = await new_processor()
    await processor.process([item_record("a", offset=3)], T0)
    await tick(processor, T0)
    assert processor.refused("u-items", 0, 4)
    [entry] = outputs_on(await tick(processor, T0 + 0.1), "u-aggregator-decided")
    assert decode(entry.value, AggregatorLog).items_to == 5


async def test_revoked_partitions_drop_their_state() -> None:
    """After a revoke, records of that partition are not decided here (the new owner re-reads them)."""
    processor = await new_processor()
    await processor.process([item_record(), vote_record("w1", "positive")], T0)
    await processor.revoked({ITEMS, VOTES})
    assert await processor.process([vote_record("w2", "positive")], T0) == []


async def test_backpressure_pauses_items_when_too_many_wait_for_votes() -> None:
    """With max_pending items waiting for votes, the items partition is paused until votes drain them."""
    processor = await new_processor(aggregator_settings(max_pending=2))
    await processor.process([item_record("x"), item_record("y", offset=1)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {ITEMS}
    await processor.process([vote_record("w1", "positive", "x"), vote_record("w2", "positive", "x")], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == set()


async def test_backpressure_pauses_votes_that_run_ahead_of_their_items_never_both() -> None:
    """Votes for items not read yet pause the votes partition (a batch covers many items); the items
    partition then keeps flowing even past its own limit, so the two can never wait on each other."""
    processor = await new_processor(aggregator_settings(max_pending=2))
    await processor.process([batch_record("w1", [("f1", "positive", 0.9), ("f2", "positive", 0.9)])], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {VOTES}
    await processor.process([item_record("a"), item_record("b", offset=1)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {VOTES}
    await processor.process([item_record("f1", offset=2)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {ITEMS}


async def test_audit_sample_goes_to_judge_without_changing_the_label() -> None:
    """With audit_rate=1 every accepted item is also sent to the judge with reason audit."""
    processor = await new_processor(aggregator_settings(audit_rate=1.0))
    outputs = await processor.process([item_record(), vote_record("w1", "positive"), vote_record("w2", "positive")], T0)
    assert len(outputs_on(outputs, "u-labels")) == 1
    [audit] = requests_in(outputs)
    assert audit.reason.value == "audit"


async def test_task_policy_applies_unless_the_aggregator_policy_is_set_explicitly(tmp_path: Path) -> None:
    """A task's own policy (Criterion 2 at 0.5) escalates an unconfident 3-0 with reason
    low_confidence; an explicit aggregator.policy=criterion1 (the alias of majority) accepts the same votes."""
    tasks = tasks_with(tmp_path, 'policy = "criterion2"\nthreshold = 0.5')
    weak = [item_record("weak")] + [vote_record(w, "positive", "weak", confidence=0.3) for w in ("w1", "w2", "w3")]
    prefix = {"prefix": "u-"}
    by_task = await new_processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"deadline_ms": 1_000}))
    [request] = requests_in(await by_task.process(weak, T0))
    assert (request.reason.value, request.policy) == ("low_confidence", "confident_majority")
    explicit = await new_processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"policy": "criterion1"}))
    [label] = outputs_on(await explicit.process(weak, T0), "u-labels")
    assert decode(label.value, Verdict).policy == "majority"


async def test_target_policy_is_the_default_and_records_its_rule_and_audit_rate() -> None:
    """With no policy configured anywhere, items are decided by the target policy; at a cold start
    (no rule yet) every complete item goes to the judge, carrying rule version 0 and rate 1."""
    settings = load_settings(topics={"prefix": "u-"}, aggregator={"deadline_ms": 1_000})
    processor = await new_processor(settings)
    item = Item(id="t1", text="text", task="sentiment3", produced_at=T0)
    records: list[Record[Any]] = [Record("u-items", 0, 0, b"t1", item, 0, b"")]
    records += [batch_record(w, [("t1", "neutral", 0.99)], task="sentiment3") for w in ("w1", "w2", "w3")]
    [request] = requests_in(await processor.process(records, T0))
    assert (request.policy, request.policy_version, request.audit_rate) == ("target", 0, 1.0)
    assert request.reason.value == "low_confidence"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('policy = "criterion2"\nthresholds = { w1-vader = 0.6, w2 = 0.7, w3 = 0.7 }', "not among the workers"),
        ('policy = "criterion2"\nthresholds = { w1 = 0.6 }', "no threshold for workers ['w2', 'w3']"),
    ],
)
async def test_thresholds_must_name_the_expected_workers(tmp_path: Path, extra: str, fragment: str) -> None:
    """A threshold keyed by a name the aggregator does not expect, or a worker left without one
    and no explicit default, stops the aggregator at start: never a silent 0.5."""
    settings = load_settings(topics={"prefix": "u-"}, tasks_file=tasks_with(tmp_path, extra))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        AggregatorProcessor(settings, settings.tasks())


async def test_a_default_threshold_covers_workers_without_one(tmp_path: Path) -> None:
    """With the task's `threshold` set, a partial per-worker map is fine."""
    settings = load_settings(
        topics={"prefix": "u-"},
        tasks_file=tasks_with(tmp_path, 'policy = "criterion2"\nthreshold = 0.5\nthresholds = { w1 = 0.6 }'),
    )
    AggregatorProcessor(settings, settings.tasks())


texts = st.text(min_size=1, max_size=20)


@settings(max_examples=50)
@given(
    label=st.sampled_from(["positive", "negative", "neutral"]),
    confidence=st.floats(0, 1),
    reasons=st.lists(st.none() | texts, min_size=1, max_size=3),
    gold=st.none() | st.sampled_from(["positive", "negative"]),
    produced=st.floats(0, 2e9),
)
def test_fast_verdict_encoding_equals_the_model(
    label: str, confidence: float, reasons: list[str | None], gold: str | None, produced: float
) -> None:
    """`verdict_bytes` decodes to exactly the Verdict the pydantic model would encode."""
    item = Item(id="x", text="t", task="sentiment", metadata={"label": gold} if gold else {}, produced_at=produced)
    pending = Pending(item, T0)
    for n, reason in enumerate(reasons):
        pending.votes[f"w{n + 1}"] = HeldVote(
            f"m{n}", T0 + n, ("x", "sentiment", label, confidence, 0.5 * n, reason), n
        )
    policy = Majority()
    fast = decode(verdict_bytes(item, pending.votes, Accept(label, confidence), policy, T0), Verdict)
    votes = tuple(
        Vote(item_id="x", worker=w, model=m, task="sentiment", label=label, confidence=confidence,
             latency_ms=row[4], reason=row[5], voted_at=at)
        for w, (m, at, row, _) in sorted(pending.votes.items())
    )  # fmt: skip
    model = Verdict(
        item_id="x", task="sentiment", label=label, decided_by=DecidedBy.WORKERS, confidence=confidence,
        votes=votes, policy=policy.name, policy_version=policy.version, gold=item.gold,
        item_produced_at=produced, decided_at=T0,
    )  # fmt: skip
    assert fast == decode(encode(model), Verdict)
    assert orjson.loads(encode(model)).keys() == orjson.loads(encode(fast)).keys()
