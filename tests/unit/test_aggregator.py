"""The aggregator around the pure policy, without Kafka: joins, dedupe, verdict tickets, votes
checked against their item's task and the expected workers, straggler detection."""

from __future__ import annotations

import base64

import pytest

from tests.unit.aggregator_kit import (
    ITEMS,
    T0,
    VOTES,
    Members,
    batch_record,
    escalated,
    item_record,
    letters_on,
    new_processor,
    outputs_on,
    replayed_state,
    requests_in,
    tick,
    verdict_record,
    vote_record,
)
from tribunal.consumers.aggregator.processor import PartitionState
from tribunal.schemas.codec import decode
from tribunal.schemas.messages import (
    AggregatorLog,
    DecidedBy,
    Item,
    JudgeRequest,
    Verdict,
    Vote,
)


async def test_two_agreeing_votes_accept_without_waiting_for_the_third() -> None:
    """Quorum 2 of 3: the second agreeing vote publishes the label at once, with the votes' audit trail."""
    processor = await new_processor()
    outputs = await processor.process(
        [item_record(gold="positive"), vote_record("w1", "positive"), vote_record("w2", "positive")], T0
    )
    [label] = outputs_on(outputs, "u-labels")
    verdict = decode(label.value, Verdict)
    assert (verdict.label, verdict.decided_by.value, verdict.gold) == ("positive", "workers", "positive")
    assert [(v.worker, v.model, v.item_id) for v in verdict.votes] == [("w1", "m-w1", "a"), ("w2", "m-w2", "a")]
    assert label.key == b"a"


async def test_votes_before_item_wait_for_the_item() -> None:
    """No decision without the item: votes that arrive first are held until it comes."""
    processor = await new_processor()
    assert (
        outputs_on(
            await processor.process([vote_record("w1", "negative"), vote_record("w2", "negative")], T0), "u-labels"
        )
        == []
    )
    outputs = await processor.process([item_record()], T0 + 0.1)
    assert decode(outputs_on(outputs, "u-labels")[0].value, Verdict).label == "negative"


async def test_one_batch_carries_votes_for_many_items() -> None:
    """A worker's batch votes on several items at once; each item is decided on its own."""
    processor = await new_processor()
    items = [item_record(f"i{n}", offset=n) for n in range(3)]
    rows = [(f"i{n}", "positive", 0.9) for n in range(3)]
    outputs = await processor.process([*items, batch_record("w1", rows, 0, 3), batch_record("w2", rows, 1, 3)], T0)
    assert sorted(decode(o.value, Verdict).item_id for o in outputs_on(outputs, "u-labels")) == ["i0", "i1", "i2"]


async def test_disagreement_escalates_with_votes_and_text() -> None:
    """1-1 with an abstention makes agreement impossible: a JudgeRequest with the votes goes to judge."""
    processor = await new_processor()
    outputs = await processor.process(
        [item_record(), vote_record("w1", "negative"), vote_record("w2", None), vote_record("w3", "positive")], T0
    )
    [request] = requests_in(outputs)
    assert request.reason.value == "disagreement" and request.item.text == "text"
    assert [v.worker for v in request.votes] == ["w1", "w2", "w3"]
    assert outputs_on(outputs, "u-labels") == []


async def test_late_vote_and_resent_item_never_make_a_second_outcome() -> None:
    """After a decision, a third vote and the same item again are ignored."""
    processor = await new_processor()
    await processor.process([item_record(), vote_record("w1", "positive"), vote_record("w2", "positive")], T0)
    again = await processor.process([vote_record("w3", "negative"), item_record(offset=1)], T0 + 1)
    assert outputs_on(again, "u-labels") == [] and outputs_on(again, "u-judge") == []


async def test_duplicate_vote_from_one_worker_counts_once() -> None:
    """A worker voting twice for an item (a redelivery) cannot make a quorum alone."""
    processor = await new_processor()
    outputs = await processor.process([item_record(), vote_record("w1", "positive"), vote_record("w1", "positive")], T0)
    assert outputs_on(outputs, "u-labels") == []


async def test_unknown_worker_is_ignored_and_dead_lettered() -> None:
    """A VoteBatch from a worker the aggregator does not expect counts for nothing (not even as a
    position): it is dead-lettered, once, and not again when re-read after a restart."""
    processor = await new_processor()
    rogue = batch_record("rogue", [("a", "positive", 0.8)], offset=3, position=10**6)
    outputs = await processor.process([item_record(), vote_record("w1", "positive"), rogue], T0)
    assert outputs_on(outputs, "u-labels") == []
    [letter] = letters_on(outputs, "u-votes")
    assert (letter.error_kind, letter.offset) == ("unexpected_worker", 3)
    assert "rogue" not in processor._states[0].heard
    state = PartitionState()
    state.replayed_items, state.replayed_votes = 1, 4
    restarted = await new_processor(restored={0: state})
    assert letters_on(await restarted.process([rogue], T0), "u-votes") == []


async def test_the_judges_verdict_with_the_escalations_ticket_becomes_the_label() -> None:
    """The verdict for an escalated item, carrying its ticket, is published to labels as the judge wrote it."""
    processor = await new_processor()
    request = await escalated(processor)
    assert request.partition == 0 and request.ticket
    record = verdict_record(request)
    outputs = await processor.process([record], T0 + 1)
    [label] = outputs_on(outputs, "u-labels")
    assert label.value == record.raw and label.key == b"a"
    again = await processor.process([record], T0 + 2)
    assert outputs_on(again, "u-labels") == []
    assert [d.error_kind for d in letters_on(again, "u-verdicts")] == ["unsolicited_verdict"]


async def test_verdicts_for_items_never_escalated_are_dead_lettered_never_labelled() -> None:
    """A verdict for an unknown id, or with another ticket, labels nothing and lands in verdicts.dlq."""
    processor = await new_processor()
    request = await escalated(processor)
    ghost = JudgeRequest(item=Item(id="ghost", text="t", task="sentiment"), reason="disagreement", policy="p",
                         policy_version=1, partition=0, ticket="f00d")  # fmt: skip
    outputs = await processor.process(
        [verdict_record(ghost), verdict_record(request, ticket="forged"), verdict_record(request, ticket=None)], T0
    )
    assert outputs_on(outputs, "u-labels") == []
    assert [d.error_kind for d in letters_on(outputs, "u-verdicts")] == ["unsolicited_verdict"] * 3
    assert [d.offset for d in letters_on(outputs, "u-verdicts")] == [5, 5, 5]
    outputs = await processor.process([verdict_record(request)], T0 + 1)
    assert len(outputs_on(outputs, "u-labels")) == 1, "the real verdict still counts"


async def test_awaiting_a_verdict_survives_a_restore() -> None:
    """The escalation's ticket is in the decided-id log: after a restore the re-read item and votes
    escalate nothing again, and the verdict is still accepted (once)."""
    processor = await new_processor()
    request = await escalated(processor)
    logged = await tick(processor, T0)
    assert processor.commit_offsets({ITEMS: 1, VOTES: 1}) == {ITEMS: 1, VOTES: 1}, "escalated: not re-read"
    state = replayed_state(logged)
    assert state.awaiting == {"a": (request.ticket, T0)}
    restored = await new_processor(restored={0: state})
    assert requests_in(await restored.process([item_record(), vote_record("w1", "positive")], T0 + 1)) == []
    outputs = await restored.process([verdict_record(request)], T0 + 1)
    assert len(outputs_on(outputs, "u-labels")) == 1
    state = replayed_state(logged + await tick(restored, T0 + 1))
    assert state.awaiting == {} and "a" in state.decided, "the decided entry ends the wait"


async def test_an_awaited_ticket_is_logged_again_before_the_log_forgets_it() -> None:
    """The log is time-retained: while a verdict is awaited, its ticket is written again every 0.4
    of the window, so a restore at any time still has it."""
    processor = await new_processor()
    request = await escalated(processor)
    await tick(processor, T0)
    assert outputs_on(await tick(processor, T0 + 10), "u-aggregator-decided") == []
    [entry] = outputs_on(await tick(processor, T0 + 25), "u-aggregator-decided")  # window 60 s: again after 24 s
    assert decode(entry.value, AggregatorLog).escalated == (("a", request.ticket, T0),)
    restored = await new_processor(restored={0: replayed_state([entry], T0 + 25)})
    assert len(outputs_on(await restored.process([verdict_record(request)], T0 + 200), "u-labels")) == 1


async def test_votes_for_another_task_than_the_items_never_count() -> None:
    """Two votes naming another task (their labels valid there) sent before the item cannot label it;
    they are dead-lettered when the item arrives, as is one arriving after it; each once."""
    processor = await new_processor()
    forged = [vote_record(w, "age_limit", task="intent", offset=n) for n, w in enumerate(("w1", "w2"))]
    assert await processor.process(forged, T0) == []
    outputs = await processor.process([item_record(offset=0)], T0 + 0.1)
    assert outputs_on(outputs, "u-labels") == []
    letters = letters_on(outputs, "u-votes")
    assert [(d.error_kind, d.offset) for d in letters] == [("task_mismatch", 0), ("task_mismatch", 1)]
    assert all(decode(base64.b64decode(d.value_b64 or ""), Vote).task == "intent" for d in letters)
    late = await processor.process([vote_record("w3", "age_limit", task="intent", offset=3)], T0 + 0.2)
    assert [(d.error_kind, d.offset) for d in letters_on(late, "u-votes")] == [("task_mismatch", 3)]
    outputs = await processor.process(
        [vote_record("w1", "positive", offset=4), vote_record("w2", "positive", offset=5)], T0 + 0.3
    )
    assert decode(outputs_on(outputs, "u-labels")[0].value, Verdict).label == "positive"


async def test_refused_votes_re_read_after_a_restart_are_not_lettered_twice() -> None:
    """A vote for another task whose batch and item were both read before the restart was lettered
    then; one whose item is new to this incarnation is lettered now."""
    state = PartitionState()
    state.replayed_items, state.replayed_votes = 1, 2
    processor = await new_processor(restored={0: state})
    outputs = await processor.process(
        [vote_record("w1", "age_limit", task="intent", offset=0), item_record(offset=0)], T0
    )
    assert letters_on(outputs, "u-votes") == []
    outputs = await processor.process(
        [vote_record("w2", "age_limit", "b", task="intent", offset=1), item_record("b", offset=1)], T0
    )
    assert [d.error_kind for d in letters_on(outputs, "u-votes")] == ["task_mismatch"]


@pytest.mark.parametrize("forged_first", [True, False])
async def test_forged_votes_held_before_the_item_never_displace_the_genuine_ones(forged_first: bool) -> None:
    """Votes for another task and the genuine votes of the same workers, all before the item, in
    either order: the genuine ones decide when the item comes, each forged vote is one letter."""
    processor = await new_processor()
    forged = [vote_record(w, "age_limit", task="intent", offset=n) for n, w in enumerate(("w1", "w2"))]
    genuine = [vote_record(w, "negative", offset=2 + n) for n, w in enumerate(("w1", "w2"))]
    first, then = (forged, genuine) if forged_first else (genuine, forged)
    assert await processor.process(first + then, T0) == []
    outputs = await processor.process([item_record(offset=0)], T0 + 0.1)
    assert [decode(o.value, Verdict).label for o in outputs_on(outputs, "u-labels")] == ["negative"]
    assert [d.error_kind for d in letters_on(outputs, "u-votes")] == ["task_mismatch"] * 2


async def test_silence_is_judged_only_on_votes_read_to_their_end() -> None:
    """An aggregator behind on its votes (never at their end) does not take unheard workers for dead."""
    processor = await new_processor()
    await processor.process([item_record(), vote_record("w1", "positive")], T0)
    assert requests_in(await processor.tick(T0 + 5)) == []  # no read_to_end: maybe reports are unread
    [request] = requests_in(await tick(processor, T0 + 5))
    assert request.reason.value == "deadline"


async def test_a_slow_worker_is_waited_for_past_the_deadline() -> None:
    """w2 keeps reporting positions behind the item: no deadline escalation, its late vote decides."""
    processor = await new_processor()
    await processor.process([item_record(offset=5), vote_record("w1", "positive")], T0)
    for n in range(1, 6):  # w2 alive and behind; w3 too
        heartbeats = [batch_record("w2", [], n, position=2), batch_record("w3", [], n, position=2)]
        outputs = await processor.process(heartbeats, T0 + n * 0.5)
        outputs += await tick(processor, T0 + n * 0.5)
        assert outputs_on(outputs, "u-judge") == []
    outputs = await processor.process([batch_record("w2", [("a", "positive", 0.9)], 9, position=6)], T0 + 3)
    assert decode(outputs_on(outputs, "u-labels")[0].value, Verdict).decided_by is DecidedBy.WORKERS


async def test_a_silent_worker_escalates_at_the_deadline() -> None:
    """No worker has reported since the partition was taken over: the item escalates at its deadline."""
    processor = await new_processor()
    await processor.process([item_record(), vote_record("w1", "positive")], T0)
    assert requests_in(await tick(processor, T0 + 0.5)) == []
    [request] = requests_in(await tick(processor, T0 + 1.0))
    assert request.reason.value == "deadline" and [v.worker for v in request.votes] == ["w1"]


async def test_item_without_any_vote_escalates_at_deadline() -> None:
    """The whole worker tier being down never stalls an item."""
    processor = await new_processor()
    await processor.process([item_record()], T0)
    [request] = requests_in(await tick(processor, T0 + 2))
    assert request.votes == ()


async def test_a_worker_that_passed_the_item_without_a_vote_escalates_at_once() -> None:
    """Positions beyond the item with no vote: the vote is never coming, so no more waiting."""
    processor = await new_processor()
    await processor.process([item_record(offset=3), vote_record("w1", "positive")], T0)
    await processor.process([batch_record("w2", [], 4, position=2), batch_record("w3", [], 5, position=2)], T0 + 0.5)
    assert requests_in(await tick(processor, T0 + 1.0)) == []  # deadline: both alive and behind, so it waits
    outputs = await processor.process(
        [batch_record("w2", [], 6, position=9), batch_record("w3", [], 7, position=9)], T0 + 1.1
    )
    [request] = requests_in(outputs)
    assert request.reason.value == "deadline"


async def test_a_slow_worker_that_falls_silent_escalates_its_waiting_items() -> None:
    """Items parked on a live worker escalate once it stops reporting for the deadline."""
    processor = await new_processor()
    await processor.process(
        [item_record(offset=3), vote_record("w1", "positive"), vote_record("w2", "negative", offset=1)], T0
    )
    await processor.process([batch_record("w3", [], 2, position=1)], T0 + 0.9)
    assert requests_in(await tick(processor, T0 + 1.0)) == []  # deadline, but w3 reported 0.1 s ago
    assert requests_in(await tick(processor, T0 + 1.5)) == []
    [request] = requests_in(await tick(processor, T0 + 1.9))  # silent for the deadline (1 s)
    assert request.reason.value == "deadline"


async def test_a_quiet_worker_with_a_live_group_member_is_waited_for_until_the_ceiling() -> None:
    """No reports (a starved loop, a long model call) but the coordinator lists its member: no escalation
    at the deadline; at the ceiling without a move it counts as stuck."""
    members = Members({"w2", "w3"})
    processor = await new_processor(members=members)
    await processor.process([item_record(offset=3), vote_record("w1", "positive")], T0)
    for now in (T0 + 1.0, T0 + 5.0, T0 + 9.9):
        assert requests_in(await tick(processor, now)) == []
    [request] = requests_in(await tick(processor, T0 + 10.0))
    assert request.reason.value == "deadline"


async def test_a_worker_that_reports_but_never_moves_is_stuck_at_the_ceiling() -> None:
    """A worker that keeps reporting the same position while the item waits is given up on at the ceiling."""
    processor = await new_processor()
    await processor.process([item_record(offset=3), vote_record("w1", "positive")], T0)
    escalated: list[JudgeRequest] = []
    for n in range(1, 22):
        now = T0 + n * 0.5
        outputs = await processor.process(
            [batch_record("w2", [], n, position=1), batch_record("w3", [], n, position=1)], now
        )
        escalated += requests_in(outputs + await tick(processor, now))
        if escalated:
            break
    # The first report (T0 + 0.5) sets the position; it has stood still for the 10 s ceiling since.
    assert [r.reason.value for r in escalated] == ["deadline"] and now == T0 + 10.5


async def test_a_moving_worker_is_waited_for_however_long_the_backlog() -> None:
    """Positions that advance (behind the item) keep the item waiting past the ceiling, until the vote."""
    processor = await new_processor()
    await processor.process([item_record(offset=500), vote_record("w1", "positive")], T0)
    for n in range(1, 60):  # 30 s: three ceilings
        now = T0 + n * 0.5
        beats = [batch_record("w2", [], n, position=n * 5), batch_record("w3", [], n, position=n * 5)]
        assert requests_in(await processor.process(beats, now) + await tick(processor, now)) == []
    outputs = await processor.process([batch_record("w2", [("a", "positive", 0.9)], 99, position=501)], T0 + 30)
    assert len(outputs_on(outputs, "u-labels")) == 1
