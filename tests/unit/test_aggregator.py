"""The aggregator's bookkeeping around the pure policy, without Kafka: joins, dedupe, deadlines,
late votes, expiry, changelog entries and restore."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from tribunal.consumers.aggregator import AggregatorProcessor, PartitionState
from tribunal.consumers.verdicts import verdict_for
from tribunal.core.errors import ConfigError
from tribunal.core.runtime import Output, Record
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas.codec import decode, encode
from tribunal.schemas.messages import AggregatorEntry, DeadLetter, DecidedBy, Item, JudgeRequest, Verdict, Vote
from tribunal.schemas.tasks import BUNDLED_TASKS_FILE

T0 = 1_000_000.0


def _settings(**aggregator: object) -> Settings:
    """Criterion 1 unless said otherwise: these tests are about the bookkeeping around a policy."""
    config = {"policy": "criterion1", "deadline_ms": 1_000, "decided_window_s": 60, **aggregator}
    return load_settings(topics={"prefix": "u-"}, aggregator=config)


async def _processor(
    settings: Settings | None = None, restored: dict[int, PartitionState] | None = None
) -> AggregatorProcessor:
    async def restore(numbers: set[int]) -> dict[int, PartitionState]:
        states = restored or {}
        return {n: states.get(n, PartitionState()) for n in numbers}

    settings = settings or _settings()
    processor = AggregatorProcessor(settings, settings.tasks(), restore=restore)
    await processor.assigned({TopicPartition("u-items", 0), TopicPartition("u-votes", 0)})
    return processor


def _item(item_id: str = "a", gold: str | None = None) -> Record[Item]:
    item = Item(id=item_id, text="text", task="sentiment", metadata={"label": gold} if gold else {}, produced_at=T0)
    return Record("u-items", 0, 0, item_id.encode(), item, 0, b"")


def _vote(
    worker: str, label: str | None, item_id: str = "a", confidence: float = 0.8, task: str = "sentiment"
) -> Record[Vote]:
    vote = Vote(item_id=item_id, worker=worker, model="m", task=task, label=label, confidence=confidence)
    return Record("u-votes", 0, 3, item_id.encode(), vote, 0, encode(vote))


def _verdict(request: JudgeRequest, label: str = "positive", ticket: str | None = "same") -> Record[Verdict]:
    verdict = verdict_for(request, label, 0.9, DecidedBy.JUDGE, 10.0)
    if ticket != "same":
        verdict = verdict.model_copy(update={"ticket": ticket})
    return Record("u-verdicts", request.partition or 0, 5, request.item.id.encode(), verdict, 0, encode(verdict))


def _letters(outputs: list[Output], topic: str) -> list[DeadLetter]:
    return [decode(o.value, DeadLetter) for o in _on(outputs, f"{topic}.dlq")]


def _on(outputs: list[Output], topic: str) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


async def test_two_agreeing_votes_accept_without_waiting_for_the_third() -> None:
    """Quorum 2 of 3: the second agreeing vote publishes the label at once."""
    processor = await _processor()
    outputs = await processor.process([_item(gold="positive"), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    [label] = _on(outputs, "u-labels")
    verdict = decode(label.value, Verdict)
    assert (verdict.label, verdict.decided_by.value, verdict.gold) == ("positive", "workers", "positive")
    assert [v.worker for v in verdict.votes] == ["w1", "w2"]
    assert label.key == b"a"


async def test_votes_before_item_wait_for_the_item() -> None:
    """No decision without the item: votes that arrive first are held until it comes."""
    processor = await _processor()
    assert _on(await processor.process([_vote("w1", "negative"), _vote("w2", "negative")], T0), "u-labels") == []
    outputs = await processor.process([_item()], T0 + 0.1)
    assert decode(_on(outputs, "u-labels")[0].value, Verdict).label == "negative"


async def test_disagreement_escalates_with_votes_and_text() -> None:
    """1-1 with an abstention makes agreement impossible: a JudgeRequest with the votes goes to judge."""
    processor = await _processor()
    outputs = await processor.process(
        [_item(), _vote("w1", "negative"), _vote("w2", None), _vote("w3", "positive")], T0
    )
    [request] = [decode(o.value, JudgeRequest) for o in _on(outputs, "u-judge")]
    assert request.reason.value == "disagreement" and request.item.text == "text"
    assert [v.worker for v in request.votes] == ["w1", "w2", "w3"]
    assert request.partition == 0 and request.ticket
    assert _on(outputs, "u-labels") == []


async def _escalated(processor: AggregatorProcessor, item_id: str = "a") -> JudgeRequest:
    outputs = await processor.process(
        [
            _item(item_id),
            _vote("w1", "negative", item_id),
            _vote("w2", None, item_id),
            _vote("w3", "positive", item_id),
        ],
        T0,
    )
    [request] = [decode(o.value, JudgeRequest) for o in _on(outputs, "u-judge")]
    return request


async def test_the_judges_verdict_with_the_escalations_ticket_becomes_the_label() -> None:
    """The verdict for an escalated item, carrying its ticket, is published to labels as the judge wrote it."""
    processor = await _processor()
    request = await _escalated(processor)
    record = _verdict(request)
    outputs = await processor.process([record], T0 + 1)
    [label] = _on(outputs, "u-labels")
    assert label.value == record.raw and label.key == b"a"
    again = await processor.process([record], T0 + 2)
    assert _on(again, "u-labels") == [] and [d.error_kind for d in _letters(again, "u-verdicts")] == [
        "unsolicited_verdict"
    ]


async def test_verdicts_for_items_never_escalated_are_dead_lettered_never_labelled() -> None:
    """A verdict for an unknown id, or with another ticket, labels nothing and lands in verdicts.dlq."""
    processor = await _processor()
    request = await _escalated(processor)
    ghost = JudgeRequest(item=Item(id="ghost", text="t", task="sentiment"), reason="disagreement", policy="p",
                         policy_version=1, partition=0, ticket="f00d")  # fmt: skip
    outputs = await processor.process(
        [_verdict(ghost), _verdict(request, ticket="forged"), _verdict(request, ticket=None)], T0
    )
    assert _on(outputs, "u-labels") == []
    assert [d.error_kind for d in _letters(outputs, "u-verdicts")] == ["unsolicited_verdict"] * 3
    assert [d.offset for d in _letters(outputs, "u-verdicts")] == [5, 5, 5]
    outputs = await processor.process([_verdict(request)], T0 + 1)
    assert len(_on(outputs, "u-labels")) == 1, "the real verdict still counts"


async def test_awaiting_a_verdict_survives_a_restore() -> None:
    """The escalation's ticket is in the changelog: after a restore the verdict is still accepted."""
    processor = await _processor()
    request = await _escalated(processor)
    changelog = [o for o in await processor.tick(T0) if o.topic == "u-aggregator-state"]
    state = PartitionState()
    for entry in changelog:
        assert entry.key is not None
        state.apply(entry.key.decode(), decode(entry.value, AggregatorEntry) if entry.value else None)
    restored = await _processor(restored={0: state})
    assert len(_on(await restored.process([_item()], T0 + 1), "u-judge")) == 0, "still settled: not escalated again"
    assert len(_on(await restored.process([_verdict(request)], T0 + 1), "u-labels")) == 1


async def test_votes_for_another_task_than_the_items_never_count() -> None:
    """Two votes naming another task (their labels valid there) sent before the item cannot label it;
    they are dead-lettered when the item arrives, as is one arriving after it."""
    processor = await _processor()
    forged = [_vote(w, "age_limit", task="intent") for w in ("w1", "w2")]
    assert await processor.process(forged, T0) == []
    outputs = await processor.process([_item()], T0 + 0.1)
    assert _on(outputs, "u-labels") == []
    letters = _letters(outputs, "u-votes")
    assert [(d.error_kind, d.offset) for d in letters] == [("task_mismatch", None)] * 2
    late = await processor.process([_vote("w3", "age_limit", task="intent")], T0 + 0.2)
    assert [(d.error_kind, d.offset) for d in _letters(late, "u-votes")] == [("task_mismatch", 3)]
    outputs = await processor.process([_vote("w1", "positive"), _vote("w2", "positive")], T0 + 0.3)
    assert decode(_on(outputs, "u-labels")[0].value, Verdict).label == "positive"


@pytest.mark.parametrize("restart", [False, True])
async def test_forged_votes_held_first_never_displace_the_genuine_ones(restart: bool) -> None:
    """Forged votes for another task, then the genuine votes, all before the item: the genuine
    ones decide when the item arrives (also after a restore from the changelog in between), and
    each forged vote is one dead letter."""
    processor = await _processor()
    forged = [_vote(w, "age_limit", task="intent") for w in ("w1", "w2")]
    genuine = [_vote(w, "negative") for w in ("w1", "w2")]
    assert await processor.process(forged + genuine + forged, T0) == []
    if restart:
        state = PartitionState()
        for entry in await processor.tick(T0):
            if entry.topic == "u-aggregator-state" and entry.key is not None:
                state.apply(entry.key.decode(), decode(entry.value, AggregatorEntry) if entry.value else None)
        processor = await _processor(restored={0: state})
    outputs = await processor.process([_item()], T0 + 0.1)
    labels = _on(outputs, "u-labels")
    assert [decode(o.value, Verdict).label for o in labels] == ["negative"]
    assert [d.error_kind for d in _letters(outputs, "u-votes")] == ["task_mismatch"] * 2


async def test_late_vote_and_resent_item_never_make_a_second_outcome() -> None:
    """After a decision, a third vote and the same item again are ignored."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    again = await processor.process([_vote("w3", "negative"), _item()], T0 + 1)
    assert _on(again, "u-labels") == [] and _on(again, "u-judge") == []


async def test_duplicate_vote_from_one_worker_counts_once() -> None:
    """A worker voting twice for an item (a redelivery) cannot make a quorum alone."""
    processor = await _processor()
    outputs = await processor.process([_item(), _vote("w1", "positive"), _vote("w1", "positive")], T0)
    assert _on(outputs, "u-labels") == []


async def test_unknown_worker_is_ignored() -> None:
    """Votes from a worker the aggregator does not expect do not count; they are dead-lettered."""
    processor = await _processor()
    outputs = await processor.process([_item(), _vote("w1", "positive"), _vote("rogue", "positive")], T0)
    assert _on(outputs, "u-labels") == []
    assert [d.error_kind for d in _letters(outputs, "u-votes")] == ["unexpected_worker"]


async def test_deadline_escalates_incomplete_items_on_tick() -> None:
    """An item still waiting at its deadline escalates with reason deadline and the votes it has."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    assert _on(await processor.tick(T0 + 0.5), "u-judge") == []
    [request] = [decode(o.value, JudgeRequest) for o in _on(await processor.tick(T0 + 1.0), "u-judge")]
    assert request.reason.value == "deadline" and [v.worker for v in request.votes] == ["w1"]


async def test_item_without_any_vote_escalates_at_deadline() -> None:
    """The whole worker tier being down never stalls an item."""
    processor = await _processor()
    await processor.process([_item()], T0)
    [request] = [decode(o.value, JudgeRequest) for o in _on(await processor.tick(T0 + 2), "u-judge")]
    assert request.votes == ()


async def test_changelog_records_pending_then_decided_then_tombstone() -> None:
    """Every touched id is written to the changelog partition of its input: pending, decided, then forgotten."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    [pending] = _on(await processor.tick(T0), "u-aggregator-state")
    entry = decode(pending.value, AggregatorEntry)
    assert pending.partition == 0 and entry.item is not None and [v.worker for v in entry.votes] == ["w1"]
    await processor.process([_vote("w2", "positive")], T0 + 0.1)
    [decided] = _on(await processor.tick(T0 + 0.1), "u-aggregator-state")
    assert decode(decided.value, AggregatorEntry).decided_at == T0 + 0.1
    [tombstone] = _on(await processor.tick(T0 + 61), "u-aggregator-state")
    assert tombstone.value is None and tombstone.key == b"a"


async def test_decided_ids_are_capped() -> None:
    """Memory stays bounded: beyond max_decided the oldest decided ids are forgotten first."""
    processor = await _processor(_settings(max_decided=2))
    for n in range(3):
        await processor.process(
            [_item(f"i{n}"), _vote("w1", "positive", f"i{n}"), _vote("w2", "positive", f"i{n}")], T0 + n
        )
    outputs = await processor.tick(T0 + 3)
    tombstones = [o.key for o in _on(outputs, "u-aggregator-state") if o.value is None]
    assert tombstones == [b"i0"]


async def test_orphan_votes_expire_without_a_label() -> None:
    """Votes whose item never arrives are dropped after the window, never labelled."""
    processor = await _processor()
    await processor.process([_vote("w1", "positive", "ghost")], T0)
    assert _on(await processor.tick(T0 + 5), "u-judge") == []
    outputs = await processor.tick(T0 + 61)
    assert [o.value for o in _on(outputs, "u-aggregator-state") if o.key == b"ghost"] == [None]
    assert _on(outputs, "u-judge") == [] and _on(outputs, "u-labels") == []


async def test_restored_state_resumes_decisions_and_remembers_decided_ids() -> None:
    """State replayed from the changelog continues where it stopped: pending votes count, decided ids stay decided."""
    state = PartitionState()
    item = Item(id="p", text="t", task="sentiment", produced_at=T0)
    first = Vote(item_id="p", worker="w1", model="m", task="sentiment", label="negative", confidence=0.7)
    state.apply("p", AggregatorEntry(item=item, votes=(first,), first_seen=T0))
    state.apply("d", AggregatorEntry(first_seen=T0, decided_at=T0))
    state.apply("gone", AggregatorEntry(first_seen=T0, decided_at=T0))
    state.apply("gone", None)
    processor = await _processor(restored={0: state})
    outputs = await processor.process([_vote("w2", "negative", "p"), _vote("w1", "positive", "d")], T0 + 0.1)
    assert [decode(o.value, Verdict).item_id for o in _on(outputs, "u-labels")] == ["p"]
    assert "gone" not in state.decided


async def test_revoked_partitions_drop_their_state() -> None:
    """After a revoke, records of that partition are not decided here (the new owner restores them)."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    await processor.revoked({TopicPartition("u-items", 0), TopicPartition("u-votes", 0)})
    assert await processor.process([_vote("w2", "positive")], T0) == []


async def test_backpressure_pauses_items_when_too_many_pending() -> None:
    """With max_pending items waiting, the items topic is paused until votes drain them."""
    processor = await _processor(_settings(max_pending=2))
    await processor.process([_item("x"), _item("y")], T0)
    assert processor.paused_topics() == frozenset({"u-items"})
    await processor.process([_vote("w1", "positive", "x"), _vote("w2", "positive", "x")], T0)
    assert processor.paused_topics() == frozenset()


async def test_audit_sample_goes_to_judge_without_changing_the_label() -> None:
    """With audit_rate=1 every accepted item is also sent to the judge with reason audit."""
    processor = await _processor(_settings(audit_rate=1.0))
    outputs = await processor.process([_item(), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    assert len(_on(outputs, "u-labels")) == 1
    [audit] = [decode(o.value, JudgeRequest) for o in _on(outputs, "u-judge")]
    assert audit.reason.value == "audit"


def _tasks_with(tmp_path: Path, extra: str) -> Path:
    """The bundled tasks file with `extra` lines added to the sentiment task."""
    text = BUNDLED_TASKS_FILE.read_text().replace("[tasks.sentiment]\n", f"[tasks.sentiment]\n{extra}\n", 1)
    # The shipped calibrations stay where they are (their paths are relative to the tasks file).
    text = text.replace('calibration = "calibrations/', f'calibration = "{BUNDLED_TASKS_FILE.parent}/calibrations/')
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return path


async def test_task_policy_applies_unless_the_aggregator_policy_is_set_explicitly(tmp_path: Path) -> None:
    """A task's own policy (Criterion 2 at 0.5) escalates an unconfident 3-0 with reason
    low_confidence; an explicit aggregator.policy=criterion1 accepts the same votes."""
    tasks = _tasks_with(tmp_path, 'policy = "criterion2"\nthreshold = 0.5')
    weak = [_item("weak")] + [_vote(w, "positive", "weak", confidence=0.3) for w in ("w1", "w2", "w3")]
    prefix = {"prefix": "u-"}
    by_task = await _processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"deadline_ms": 1_000}))
    [request] = [decode(o.value, JudgeRequest) for o in _on(await by_task.process(weak, T0), "u-judge")]
    assert (request.reason.value, request.policy) == ("low_confidence", "criterion2")
    explicit = await _processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"policy": "criterion1"}))
    [label] = _on(await explicit.process(weak, T0), "u-labels")
    assert decode(label.value, Verdict).policy == "criterion1"


async def test_target_policy_is_the_default_and_records_its_rule_and_audit_rate() -> None:
    """With no policy configured anywhere, items are decided by the target policy; at a cold start
    (no rule yet) every complete item goes to the judge, carrying rule version 0 and rate 1."""
    settings = load_settings(topics={"prefix": "u-"}, aggregator={"deadline_ms": 1_000})
    processor = await _processor(settings)
    item = Item(id="t1", text="text", task="sentiment3", produced_at=T0)
    votes = [Vote(item_id="t1", worker=w, model="m", task="sentiment3", label="neutral", confidence=0.99)
             for w in ("w1", "w2", "w3")]  # fmt: skip
    records = [Record("u-items", 0, 0, b"t1", item, 0, b"")] + [
        Record("u-votes", 0, 0, b"t1", v, 0, b"") for v in votes
    ]
    [request] = [decode(o.value, JudgeRequest) for o in _on(await processor.process(records, T0), "u-judge")]
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
    settings = load_settings(topics={"prefix": "u-"}, tasks_file=_tasks_with(tmp_path, extra))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        AggregatorProcessor(settings, settings.tasks())


async def test_a_default_threshold_covers_workers_without_one(tmp_path: Path) -> None:
    """With the task's `threshold` set, a partial per-worker map is fine."""
    settings = load_settings(
        topics={"prefix": "u-"},
        tasks_file=_tasks_with(tmp_path, 'policy = "criterion2"\nthreshold = 0.5\nthresholds = { w1 = 0.6 }'),
    )
    AggregatorProcessor(settings, settings.tasks())
