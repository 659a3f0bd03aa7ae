"""The aggregator's bookkeeping around the pure policy, without Kafka: joins, dedupe, straggler
detection, late votes, expiry, the decided-id log, commit gates and restore; authority (tickets on
verdicts, votes checked against their item's task and the expected workers); policy choice."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from tribunal.consumers.aggregator.processor import AggregatorProcessor, PartitionState
from tribunal.consumers.aggregator.state import Pending
from tribunal.consumers.policy.ballots import Accept, HeldVote
from tribunal.consumers.policy.voting import Majority
from tribunal.consumers.verdicts import verdict_bytes, verdict_for
from tribunal.core.errors import ConfigError
from tribunal.core.runtime import Output, Record
from tribunal.core.settings import Settings, load_settings
from tribunal.schemas.codec import decode, encode
from tribunal.schemas.messages import (
    AggregatorLog,
    DeadLetter,
    DecidedBy,
    Item,
    JudgeRequest,
    Verdict,
    Vote,
    VoteBatch,
)
from tribunal.schemas.tasks import BUNDLED_TASKS_FILE

T0 = 1_000_000.0
ITEMS, VOTES, VERDICTS = TopicPartition("u-items", 0), TopicPartition("u-votes", 0), TopicPartition("u-verdicts", 0)


def _settings(**aggregator: object) -> Settings:
    """Criterion 1 unless said otherwise: these tests are about the bookkeeping around a policy."""
    return load_settings(
        topics={"prefix": "u-"},
        aggregator={
            "policy": "criterion1",
            "deadline_ms": 1_000,
            "ceiling_ms": 10_000,
            "max_wait_ms": 30_000,
            "decided_window_s": 60,
            **aggregator,
        },
    )


class Members:
    """Group membership as a test scripts it: the workers with a live member on every partition."""

    def __init__(self, live: set[str]) -> None:
        self.alive = live

    def live(self, worker: str, partition: int) -> bool | None:
        return worker in self.alive

    async def refresh(self, now: float) -> None:
        return None

    async def close(self) -> None:
        return None


async def _processor(
    settings: Settings | None = None, restored: dict[int, PartitionState] | None = None, members: Members | None = None
) -> AggregatorProcessor:
    async def restore(numbers: set[int]) -> dict[int, PartitionState]:
        states = restored or {}
        return {n: states.get(n, PartitionState()) for n in numbers}

    settings = settings or _settings()
    processor = AggregatorProcessor(settings, settings.tasks(), restore=restore, members=members, clock=lambda: T0)
    await processor.assigned({ITEMS, VOTES, VERDICTS})
    return processor


def _item(item_id: str = "a", gold: str | None = None, offset: int = 0) -> Record[Item]:
    item = Item(id=item_id, text="text", task="sentiment", metadata={"label": gold} if gold else {}, produced_at=T0)
    return Record("u-items", 0, offset, item_id.encode(), item, 0, b"")


def _batch(
    worker: str,
    rows: Sequence[tuple[str, str | None, float]],
    offset: int = 0,
    position: int = 0,
    task: str = "sentiment",
) -> Record[VoteBatch]:
    """A worker's VoteBatch at votes offset `offset`, claiming items below `position`."""
    votes = tuple((item_id, task, label, confidence, 1.0, None) for item_id, label, confidence in rows)
    batch = VoteBatch(worker=worker, model=f"m-{worker}", next_offset=position, votes=votes, voted_at=T0)
    return Record("u-votes", 0, offset, worker.encode(), batch, 0, encode(batch))


def _vote(
    worker: str,
    label: str | None,
    item_id: str = "a",
    confidence: float = 0.8,
    offset: int = 0,
    task: str = "sentiment",
) -> Record[VoteBatch]:
    return _batch(worker, [(item_id, label, confidence)], offset, task=task)


def _verdict(request: JudgeRequest, label: str = "positive", ticket: str | None = "same") -> Record[Verdict]:
    verdict = verdict_for(request, label, 0.9, DecidedBy.JUDGE, 10.0)
    if ticket != "same":
        verdict = verdict.model_copy(update={"ticket": ticket})
    return Record("u-verdicts", request.partition or 0, 5, request.item.id.encode(), verdict, 0, encode(verdict))


def _letters(outputs: list[Output], topic: str) -> list[DeadLetter]:
    return [decode(o.value, DeadLetter) for o in _on(outputs, f"{topic}.dlq")]


async def _tick(processor: AggregatorProcessor, now: float) -> list[Output]:
    """The runtime's end of a batch: every input read to its end, then the tick."""
    processor.read_to_end({ITEMS, VOTES}, now)
    return await processor.tick(now)


def _on(outputs: list[Output], topic: str) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def _requests(outputs: list[Output]) -> list[JudgeRequest]:
    return [decode(o.value, JudgeRequest) for o in _on(outputs, "u-judge")]


async def test_two_agreeing_votes_accept_without_waiting_for_the_third() -> None:
    """Quorum 2 of 3: the second agreeing vote publishes the label at once, with the votes' audit trail."""
    processor = await _processor()
    outputs = await processor.process([_item(gold="positive"), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    [label] = _on(outputs, "u-labels")
    verdict = decode(label.value, Verdict)
    assert (verdict.label, verdict.decided_by.value, verdict.gold) == ("positive", "workers", "positive")
    assert [(v.worker, v.model, v.item_id) for v in verdict.votes] == [("w1", "m-w1", "a"), ("w2", "m-w2", "a")]
    assert label.key == b"a"


async def test_votes_before_item_wait_for_the_item() -> None:
    """No decision without the item: votes that arrive first are held until it comes."""
    processor = await _processor()
    assert _on(await processor.process([_vote("w1", "negative"), _vote("w2", "negative")], T0), "u-labels") == []
    outputs = await processor.process([_item()], T0 + 0.1)
    assert decode(_on(outputs, "u-labels")[0].value, Verdict).label == "negative"


async def test_one_batch_carries_votes_for_many_items() -> None:
    """A worker's batch votes on several items at once; each item is decided on its own."""
    processor = await _processor()
    items = [_item(f"i{n}", offset=n) for n in range(3)]
    rows = [(f"i{n}", "positive", 0.9) for n in range(3)]
    outputs = await processor.process([*items, _batch("w1", rows, 0, 3), _batch("w2", rows, 1, 3)], T0)
    assert sorted(decode(o.value, Verdict).item_id for o in _on(outputs, "u-labels")) == ["i0", "i1", "i2"]


async def test_disagreement_escalates_with_votes_and_text() -> None:
    """1-1 with an abstention makes agreement impossible: a JudgeRequest with the votes goes to judge."""
    processor = await _processor()
    outputs = await processor.process(
        [_item(), _vote("w1", "negative"), _vote("w2", None), _vote("w3", "positive")], T0
    )
    [request] = _requests(outputs)
    assert request.reason.value == "disagreement" and request.item.text == "text"
    assert [v.worker for v in request.votes] == ["w1", "w2", "w3"]
    assert _on(outputs, "u-labels") == []


async def test_late_vote_and_resent_item_never_make_a_second_outcome() -> None:
    """After a decision, a third vote and the same item again are ignored."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    again = await processor.process([_vote("w3", "negative"), _item(offset=1)], T0 + 1)
    assert _on(again, "u-labels") == [] and _on(again, "u-judge") == []


async def test_duplicate_vote_from_one_worker_counts_once() -> None:
    """A worker voting twice for an item (a redelivery) cannot make a quorum alone."""
    processor = await _processor()
    outputs = await processor.process([_item(), _vote("w1", "positive"), _vote("w1", "positive")], T0)
    assert _on(outputs, "u-labels") == []


async def test_unknown_worker_is_ignored_and_dead_lettered() -> None:
    """A VoteBatch from a worker the aggregator does not expect counts for nothing (not even as a
    position): it is dead-lettered, once, and not again when re-read after a restart."""
    processor = await _processor()
    rogue = _batch("rogue", [("a", "positive", 0.8)], offset=3, position=10**6)
    outputs = await processor.process([_item(), _vote("w1", "positive"), rogue], T0)
    assert _on(outputs, "u-labels") == []
    [letter] = _letters(outputs, "u-votes")
    assert (letter.error_kind, letter.offset) == ("unexpected_worker", 3)
    assert "rogue" not in processor._states[0].heard
    state = PartitionState()
    state.replayed_items, state.replayed_votes = 1, 4
    restarted = await _processor(restored={0: state})
    assert _letters(await restarted.process([rogue], T0), "u-votes") == []


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
    [request] = _requests(outputs)
    return request


async def test_the_judges_verdict_with_the_escalations_ticket_becomes_the_label() -> None:
    """The verdict for an escalated item, carrying its ticket, is published to labels as the judge wrote it."""
    processor = await _processor()
    request = await _escalated(processor)
    assert request.partition == 0 and request.ticket
    record = _verdict(request)
    outputs = await processor.process([record], T0 + 1)
    [label] = _on(outputs, "u-labels")
    assert label.value == record.raw and label.key == b"a"
    again = await processor.process([record], T0 + 2)
    assert _on(again, "u-labels") == []
    assert [d.error_kind for d in _letters(again, "u-verdicts")] == ["unsolicited_verdict"]


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


def _replayed(outputs: list[Output], logged_at: float = T0) -> PartitionState:
    """A partition's state restored from the log records among `outputs`."""
    state = PartitionState()
    for entry in _on(outputs, "u-aggregator-decided"):
        state.replay(decode(entry.value, AggregatorLog), T0 - 60, logged_at)
    return state


async def test_awaiting_a_verdict_survives_a_restore() -> None:
    """The escalation's ticket is in the decided-id log: after a restore the re-read item and votes
    escalate nothing again, and the verdict is still accepted (once)."""
    processor = await _processor()
    request = await _escalated(processor)
    logged = await _tick(processor, T0)
    assert processor.commit_offsets({ITEMS: 1, VOTES: 1}) == {ITEMS: 1, VOTES: 1}, "escalated: not re-read"
    state = _replayed(logged)
    assert state.awaiting == {"a": (request.ticket, T0)}
    restored = await _processor(restored={0: state})
    assert _requests(await restored.process([_item(), _vote("w1", "positive")], T0 + 1)) == []
    outputs = await restored.process([_verdict(request)], T0 + 1)
    assert len(_on(outputs, "u-labels")) == 1
    state = _replayed(logged + await _tick(restored, T0 + 1))
    assert state.awaiting == {} and "a" in state.decided, "the decided entry ends the wait"


async def test_an_awaited_ticket_is_logged_again_before_the_log_forgets_it() -> None:
    """The log is time-retained: while a verdict is awaited, its ticket is written again every 0.4
    of the window, so a restore at any time still has it."""
    processor = await _processor()
    request = await _escalated(processor)
    await _tick(processor, T0)
    assert _on(await _tick(processor, T0 + 10), "u-aggregator-decided") == []
    [entry] = _on(await _tick(processor, T0 + 25), "u-aggregator-decided")  # window 60 s: again after 24 s
    assert decode(entry.value, AggregatorLog).escalated == (("a", request.ticket, T0),)
    restored = await _processor(restored={0: _replayed([entry], T0 + 25)})
    assert len(_on(await restored.process([_verdict(request)], T0 + 200), "u-labels")) == 1


async def test_votes_for_another_task_than_the_items_never_count() -> None:
    """Two votes naming another task (their labels valid there) sent before the item cannot label it;
    they are dead-lettered when the item arrives, as is one arriving after it; each once."""
    processor = await _processor()
    forged = [_vote(w, "age_limit", task="intent", offset=n) for n, w in enumerate(("w1", "w2"))]
    assert await processor.process(forged, T0) == []
    outputs = await processor.process([_item(offset=0)], T0 + 0.1)
    assert _on(outputs, "u-labels") == []
    letters = _letters(outputs, "u-votes")
    assert [(d.error_kind, d.offset) for d in letters] == [("task_mismatch", 0), ("task_mismatch", 1)]
    assert all(decode(base64.b64decode(d.value_b64 or ""), Vote).task == "intent" for d in letters)
    late = await processor.process([_vote("w3", "age_limit", task="intent", offset=3)], T0 + 0.2)
    assert [(d.error_kind, d.offset) for d in _letters(late, "u-votes")] == [("task_mismatch", 3)]
    outputs = await processor.process([_vote("w1", "positive", offset=4), _vote("w2", "positive", offset=5)], T0 + 0.3)
    assert decode(_on(outputs, "u-labels")[0].value, Verdict).label == "positive"


async def test_refused_votes_re_read_after_a_restart_are_not_lettered_twice() -> None:
    """A vote for another task whose batch and item were both read before the restart was lettered
    then; one whose item is new to this incarnation is lettered now."""
    state = PartitionState()
    state.replayed_items, state.replayed_votes = 1, 2
    processor = await _processor(restored={0: state})
    outputs = await processor.process([_vote("w1", "age_limit", task="intent", offset=0), _item(offset=0)], T0)
    assert _letters(outputs, "u-votes") == []
    outputs = await processor.process(
        [_vote("w2", "age_limit", "b", task="intent", offset=1), _item("b", offset=1)], T0
    )
    assert [d.error_kind for d in _letters(outputs, "u-votes")] == ["task_mismatch"]


@pytest.mark.parametrize("forged_first", [True, False])
async def test_forged_votes_held_before_the_item_never_displace_the_genuine_ones(forged_first: bool) -> None:
    """Votes for another task and the genuine votes of the same workers, all before the item, in
    either order: the genuine ones decide when the item comes, each forged vote is one letter."""
    processor = await _processor()
    forged = [_vote(w, "age_limit", task="intent", offset=n) for n, w in enumerate(("w1", "w2"))]
    genuine = [_vote(w, "negative", offset=2 + n) for n, w in enumerate(("w1", "w2"))]
    first, then = (forged, genuine) if forged_first else (genuine, forged)
    assert await processor.process(first + then, T0) == []
    outputs = await processor.process([_item(offset=0)], T0 + 0.1)
    assert [decode(o.value, Verdict).label for o in _on(outputs, "u-labels")] == ["negative"]
    assert [d.error_kind for d in _letters(outputs, "u-votes")] == ["task_mismatch"] * 2


async def test_silence_is_judged_only_on_votes_read_to_their_end() -> None:
    """An aggregator behind on its votes (never at their end) does not take unheard workers for dead."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    assert _requests(await processor.tick(T0 + 5)) == []  # no read_to_end: maybe reports are unread
    [request] = _requests(await _tick(processor, T0 + 5))
    assert request.reason.value == "deadline"


async def test_a_slow_worker_is_waited_for_past_the_deadline() -> None:
    """w2 keeps reporting positions behind the item: no deadline escalation, its late vote decides."""
    processor = await _processor()
    await processor.process([_item(offset=5), _vote("w1", "positive")], T0)
    for n in range(1, 6):  # w2 alive and behind; w3 too
        heartbeats = [_batch("w2", [], n, position=2), _batch("w3", [], n, position=2)]
        outputs = await processor.process(heartbeats, T0 + n * 0.5)
        outputs += await _tick(processor, T0 + n * 0.5)
        assert _on(outputs, "u-judge") == []
    outputs = await processor.process([_batch("w2", [("a", "positive", 0.9)], 9, position=6)], T0 + 3)
    assert decode(_on(outputs, "u-labels")[0].value, Verdict).decided_by is DecidedBy.WORKERS


async def test_a_silent_worker_escalates_at_the_deadline() -> None:
    """No worker has reported since the partition was taken over: the item escalates at its deadline."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    assert _requests(await _tick(processor, T0 + 0.5)) == []
    [request] = _requests(await _tick(processor, T0 + 1.0))
    assert request.reason.value == "deadline" and [v.worker for v in request.votes] == ["w1"]


async def test_item_without_any_vote_escalates_at_deadline() -> None:
    """The whole worker tier being down never stalls an item."""
    processor = await _processor()
    await processor.process([_item()], T0)
    [request] = _requests(await _tick(processor, T0 + 2))
    assert request.votes == ()


async def test_a_worker_that_passed_the_item_without_a_vote_escalates_at_once() -> None:
    """Positions beyond the item with no vote: the vote is never coming, so no more waiting."""
    processor = await _processor()
    await processor.process([_item(offset=3), _vote("w1", "positive")], T0)
    await processor.process([_batch("w2", [], 4, position=2), _batch("w3", [], 5, position=2)], T0 + 0.5)
    assert _requests(await _tick(processor, T0 + 1.0)) == []  # deadline: both alive and behind, so it waits
    outputs = await processor.process([_batch("w2", [], 6, position=9), _batch("w3", [], 7, position=9)], T0 + 1.1)
    [request] = _requests(outputs)
    assert request.reason.value == "deadline"


async def test_a_slow_worker_that_falls_silent_escalates_its_waiting_items() -> None:
    """Items parked on a live worker escalate once it stops reporting for the deadline."""
    processor = await _processor()
    await processor.process([_item(offset=3), _vote("w1", "positive"), _vote("w2", "negative", offset=1)], T0)
    await processor.process([_batch("w3", [], 2, position=1)], T0 + 0.9)
    assert _requests(await _tick(processor, T0 + 1.0)) == []  # deadline, but w3 reported 0.1 s ago
    assert _requests(await _tick(processor, T0 + 1.5)) == []
    [request] = _requests(await _tick(processor, T0 + 1.9))  # silent for the deadline (1 s)
    assert request.reason.value == "deadline"


async def test_a_quiet_worker_with_a_live_group_member_is_waited_for_until_the_ceiling() -> None:
    """No reports (a starved loop, a long model call) but the coordinator lists its member: no escalation
    at the deadline; at the ceiling without a move it counts as stuck."""
    members = Members({"w2", "w3"})
    processor = await _processor(members=members)
    await processor.process([_item(offset=3), _vote("w1", "positive")], T0)
    for now in (T0 + 1.0, T0 + 5.0, T0 + 9.9):
        assert _requests(await _tick(processor, now)) == []
    [request] = _requests(await _tick(processor, T0 + 10.0))
    assert request.reason.value == "deadline"


async def test_a_worker_that_reports_but_never_moves_is_stuck_at_the_ceiling() -> None:
    """A worker that keeps reporting the same position while the item waits is given up on at the ceiling."""
    processor = await _processor()
    await processor.process([_item(offset=3), _vote("w1", "positive")], T0)
    escalated: list[JudgeRequest] = []
    for n in range(1, 22):
        now = T0 + n * 0.5
        outputs = await processor.process([_batch("w2", [], n, position=1), _batch("w3", [], n, position=1)], now)
        escalated += _requests(outputs + await _tick(processor, now))
        if escalated:
            break
    # The first report (T0 + 0.5) sets the position; it has stood still for the 10 s ceiling since.
    assert [r.reason.value for r in escalated] == ["deadline"] and now == T0 + 10.5


async def test_a_moving_worker_is_waited_for_however_long_the_backlog() -> None:
    """Positions that advance (behind the item) keep the item waiting past the ceiling, until the vote."""
    processor = await _processor()
    await processor.process([_item(offset=500), _vote("w1", "positive")], T0)
    for n in range(1, 60):  # 30 s: three ceilings
        now = T0 + n * 0.5
        beats = [_batch("w2", [], n, position=n * 5), _batch("w3", [], n, position=n * 5)]
        assert _requests(await processor.process(beats, now) + await _tick(processor, now)) == []
    outputs = await processor.process([_batch("w2", [("a", "positive", 0.9)], 99, position=501)], T0 + 30)
    assert len(_on(outputs, "u-labels")) == 1


async def test_log_records_decided_ids_and_read_offsets_only() -> None:
    """Each transaction logs, per touched partition, the ids it decided and how far it read; never votes."""
    processor = await _processor()
    await processor.process([_item(offset=4), _vote("w1", "positive", offset=7)], T0)
    [entry] = _on(await _tick(processor, T0), "u-aggregator-decided")
    logged = decode(entry.value, AggregatorLog)
    assert (entry.partition, logged.items_to, logged.votes_to, logged.decided) == (0, 5, 8, ())
    await processor.process([_vote("w2", "positive", offset=8)], T0 + 0.1)
    [entry] = _on(await _tick(processor, T0 + 0.1), "u-aggregator-decided")
    assert decode(entry.value, AggregatorLog).decided == (("a", T0 + 0.1),)
    assert _on(await _tick(processor, T0 + 0.2), "u-aggregator-decided") == []  # nothing new: no record


async def test_commits_stop_at_the_oldest_undecided_work() -> None:
    """Offsets committed never pass an undecided item or a votes record holding one of its votes."""
    processor = await _processor()
    await processor.process([_item("a", offset=4), _item("b", offset=5), _vote("w1", "positive", "a", offset=10)], T0)
    assert processor.commit_offsets({ITEMS: 6, VOTES: 11}) == {ITEMS: 4, VOTES: 10}
    await processor.process([_vote("w2", "positive", "a", offset=11)], T0)
    assert processor.commit_offsets({ITEMS: 6, VOTES: 12}) == {ITEMS: 5, VOTES: 12}


async def test_decided_ids_are_capped() -> None:
    """Memory stays bounded: beyond max_decided the oldest decided ids are forgotten first."""
    processor = await _processor(_settings(max_decided=2))
    for n in range(3):
        await processor.process(
            [_item(f"i{n}", offset=n), _vote("w1", "positive", f"i{n}"), _vote("w2", "positive", f"i{n}")], T0 + n
        )
    await _tick(processor, T0 + 3)
    again = await processor.process(
        [_item("i0", offset=9), _vote("w1", "positive", "i0"), _vote("w2", "positive", "i0")], T0 + 4
    )
    assert len(_on(again, "u-labels")) == 1  # i0 forgotten: a re-sent i0 is decided again


async def test_orphan_votes_expire_without_a_label() -> None:
    """Votes whose item never arrives are dropped after the window, never labelled."""
    processor = await _processor()
    await processor.process([_vote("w1", "positive", "ghost")], T0)
    assert _on(await _tick(processor, T0 + 5), "u-judge") == []
    outputs = await _tick(processor, T0 + 61)
    assert _on(outputs, "u-judge") == [] and _on(outputs, "u-labels") == []
    assert processor.commit_offsets({VOTES: 1}) == {VOTES: 1}  # no longer holds the votes commit


async def test_restored_decided_ids_ignore_re_read_records() -> None:
    """After a restart, re-read items and votes of decided ids make nothing; re-read bad records are not
    dead-lettered twice."""
    state = PartitionState()
    state.remember("d", T0)
    state.replayed_items, state.replayed_votes = 10, 20
    processor = await _processor(restored={0: state})
    outputs = await processor.process([_item("d", offset=3), _vote("w1", "positive", "d", offset=5)], T0 + 0.1)
    assert _on(outputs, "u-labels") == [] and _on(outputs, "u-judge") == []
    assert not processor.refused("u-items", 0, 9) and processor.refused("u-items", 0, 10)
    assert not processor.refused("u-votes", 0, 19) and processor.refused("u-votes", 0, 20)


async def test_a_refused_record_read_last_is_logged_so_a_restart_letters_it_once() -> None:
    """A bad record read after an undecided item (the commit stays below both) and last in its
    partition: this transaction's log record covers it, so the restart that re-reads it writes no
    second letter (chaos once found one hostile record with two)."""
    processor = await _processor()
    await processor.process([_item("a", offset=3), _vote("w1", "positive", offset=5)], T0)
    assert processor.refused("u-items", 0, 4) and processor.refused("u-votes", 0, 6)
    outputs = await _tick(processor, T0)
    assert processor.commit_offsets({ITEMS: 5, VOTES: 7}) == {ITEMS: 3, VOTES: 5}  # both re-read after a restart
    restarted = await _processor(restored={0: _replayed(outputs)})
    assert not restarted.refused("u-items", 0, 4) and not restarted.refused("u-votes", 0, 6)
    assert restarted.refused("u-items", 0, 5) and restarted.refused("u-votes", 0, 7)


async def test_a_refused_record_alone_in_a_transaction_is_logged_too() -> None:
    """A transaction that read nothing but a bad record still logs how far it read."""
    processor = await _processor()
    await processor.process([_item("a", offset=3)], T0)
    await _tick(processor, T0)
    assert processor.refused("u-items", 0, 4)
    [entry] = _on(await _tick(processor, T0 + 0.1), "u-aggregator-decided")
    assert decode(entry.value, AggregatorLog).items_to == 5


async def test_revoked_partitions_drop_their_state() -> None:
    """After a revoke, records of that partition are not decided here (the new owner re-reads them)."""
    processor = await _processor()
    await processor.process([_item(), _vote("w1", "positive")], T0)
    await processor.revoked({ITEMS, VOTES})
    assert await processor.process([_vote("w2", "positive")], T0) == []


async def test_backpressure_pauses_items_when_too_many_wait_for_votes() -> None:
    """With max_pending items waiting for votes, the items partition is paused until votes drain them."""
    processor = await _processor(_settings(max_pending=2))
    await processor.process([_item("x"), _item("y", offset=1)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {ITEMS}
    await processor.process([_vote("w1", "positive", "x"), _vote("w2", "positive", "x")], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == set()


async def test_backpressure_pauses_votes_that_run_ahead_of_their_items_never_both() -> None:
    """Votes for items not read yet pause the votes partition (a batch covers many items); the items
    partition then keeps flowing even past its own limit, so the two can never wait on each other."""
    processor = await _processor(_settings(max_pending=2))
    await processor.process([_batch("w1", [("f1", "positive", 0.9), ("f2", "positive", 0.9)])], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {VOTES}
    await processor.process([_item("a"), _item("b", offset=1)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {VOTES}
    await processor.process([_item("f1", offset=2)], T0)
    assert processor.paused_partitions({ITEMS, VOTES}) == {ITEMS}


async def test_audit_sample_goes_to_judge_without_changing_the_label() -> None:
    """With audit_rate=1 every accepted item is also sent to the judge with reason audit."""
    processor = await _processor(_settings(audit_rate=1.0))
    outputs = await processor.process([_item(), _vote("w1", "positive"), _vote("w2", "positive")], T0)
    assert len(_on(outputs, "u-labels")) == 1
    [audit] = _requests(outputs)
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
    low_confidence; an explicit aggregator.policy=criterion1 (the alias of majority) accepts the same votes."""
    tasks = _tasks_with(tmp_path, 'policy = "criterion2"\nthreshold = 0.5')
    weak = [_item("weak")] + [_vote(w, "positive", "weak", confidence=0.3) for w in ("w1", "w2", "w3")]
    prefix = {"prefix": "u-"}
    by_task = await _processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"deadline_ms": 1_000}))
    [request] = _requests(await by_task.process(weak, T0))
    assert (request.reason.value, request.policy) == ("low_confidence", "confident_majority")
    explicit = await _processor(load_settings(topics=prefix, tasks_file=tasks, aggregator={"policy": "criterion1"}))
    [label] = _on(await explicit.process(weak, T0), "u-labels")
    assert decode(label.value, Verdict).policy == "majority"


async def test_target_policy_is_the_default_and_records_its_rule_and_audit_rate() -> None:
    """With no policy configured anywhere, items are decided by the target policy; at a cold start
    (no rule yet) every complete item goes to the judge, carrying rule version 0 and rate 1."""
    settings = load_settings(topics={"prefix": "u-"}, aggregator={"deadline_ms": 1_000})
    processor = await _processor(settings)
    item = Item(id="t1", text="text", task="sentiment3", produced_at=T0)
    records: list[Record[Any]] = [Record("u-items", 0, 0, b"t1", item, 0, b"")]
    records += [_batch(w, [("t1", "neutral", 0.99)], task="sentiment3") for w in ("w1", "w2", "w3")]
    [request] = _requests(await processor.process(records, T0))
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
