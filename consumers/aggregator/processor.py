"""Aggregator tier: joins `items`, `votes` and `verdicts` per item id and labels each item once.

`items`, `votes` and `verdicts` are co-partitioned (same partition count; items and verdicts
keyed by id, a worker's `VoteBatch` for items partition p written to votes partition p) and
assigned by range, so one instance owns partition number p of all three. For each item it asks
the task's pure policy (`policy.voting` or `policy.target`, built per task when the tier starts
by `aggregator.policies`) whether to wait, accept the workers' label (a `Verdict` to `labels`)
or escalate (a `JudgeRequest` to `judge`, with a fresh ticket). When the policy waits for missing
votes, straggler detection (`aggregator.stragglers`) says when to stop: a worker that is alive
and behind is waited for (up to a ceiling); one that has passed the item, or fell silent past
the deadline, is not; then `policy.ballots.final` decides. The judge's verdict comes back on
`verdicts` and is published to `labels` only if it carries the ticket of an escalation still
awaiting it: the aggregator is the one writer of `labels`.

Admission (`aggregator.admission`): a vote counts only for an item of the vote's task, from an
expected worker; refused votes and unsolicited verdicts go to their topic's dead-letter topic.
This tier owns the dead letters of `items` (workers skip bad items without a letter), so each
bad record makes one letter, and a record re-read after a restart makes none.

Exactly once (`aggregator.state`): outputs, the decided ids and awaited tickets of the
transaction (the `aggregator-decided` log, partition p for partition p) and the input offsets
commit in ONE transaction, and the items/votes offsets committed stop at the oldest undecided
work, which a restart, crash or rebalance therefore re-reads. On assignment a partition's
decided ids and awaited tickets are restored from its log before any of its records are
processed. Decided ids are forgotten after a window; a ticket lives until its verdict comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel

from tribunal.consumers.aggregator.admission import verdict_refusal
from tribunal.consumers.aggregator.dead_letters import DeadLetters
from tribunal.consumers.aggregator.judge_budget import JudgeBudget, KafkaBacklogProbe
from tribunal.consumers.aggregator.membership import GroupWatch, Membership
from tribunal.consumers.aggregator.outcomes import DecisionOutputs
from tribunal.consumers.aggregator.policies import TaskPolicies
from tribunal.consumers.aggregator.restore import restore_from_log
from tribunal.consumers.aggregator.state import AWAITING_RELOG, MAX_LOG_ENTRIES, PartitionState, Pending
from tribunal.consumers.aggregator.stragglers import StragglerRule
from tribunal.consumers.aggregator.waits import WaitSchedule
from tribunal.consumers.policy.ballots import HeldVote, Policy, Wait, audited, final
from tribunal.consumers.tables.reliability import ReliabilityTotals
from tribunal.consumers.tables.rules import RuleTable
from tribunal.consumers.verdicts import observe_latency
from tribunal.core.batches import Output
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.metrics import (
    AWAITING_VERDICTS,
    DECISIONS,
    LATE_VOTES,
    PENDING_ITEMS,
    VOTE_WAITS_OVER,
)
from tribunal.core.process import tune_gc
from tribunal.core.records import Record
from tribunal.core.runtime import Processor, serve
from tribunal.core.settings import Settings
from tribunal.schemas.codec import key
from tribunal.schemas.messages import Item, Verdict, VoteBatch
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["AggregatorProcessor", "PartitionState", "audited", "group_id", "run", "serve_aggregator"]

log = get_logger("tribunal.aggregator")


def group_id(settings: Settings) -> str:
    return settings.topics.aggregator_group


Restorer = Callable[[set[int]], Awaitable[dict[int, PartitionState]]]
_DUPLICATE = DECISIONS.labels("duplicate_item", "")


class AggregatorProcessor(Processor):
    tier = "aggregator"

    def __init__(
        self,
        settings: Settings,
        tasks: TaskRegistry,
        *,
        restore: Restorer | None = None,
        reliability: ReliabilityTotals | None = None,
        judge_budget: JudgeBudget | None = None,
        rules: RuleTable | None = None,
        members: Membership | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`restore` rebuilds partitions' decided ids and tickets (default: from the log topic);
        `reliability` supplies learned reliability (default: the prior only); `judge_budget` the judge
        budget; `rules` the target policy's shared rules (default: this process's own,
        unpublished); `members` the worker groups' live members (default: unknown); `clock`
        stamps when partitions were taken over (unheard workers count as heard then)."""
        self._settings = settings
        self._tasks = tasks
        self.batch_size = settings.aggregator.batch_size
        self._restore = restore or self._restore_from_log
        self._config = config = settings.aggregator
        self._reliability = reliability
        self._judge_budget = judge_budget or JudgeBudget(config)
        self._rules = rules or RuleTable(settings, tasks)
        self._rules_started = rules is not None
        self._policies = TaskPolicies(config, tasks, self._rules, reliability)
        self._policies.validate()
        if not self._rules_started:
            self._policies.build_all()  # no rules table to restore first
        self._outcomes = DecisionOutputs(settings.topics, tasks, self._policies, self._judge_budget, config.audit_rate)
        self._members = members
        self._clock = clock
        self._reliability_polled_at = float("-inf")
        self._expected = tuple(config.workers)
        rule = StragglerRule(config.deadline_ms, config.effective_ceiling_ms, config.effective_max_wait_ms)
        self._waits = WaitSchedule(rule, self._expected, members, config.window_s)
        self._deadline_s = config.deadline_ms / 1000.0
        self._window_s = config.window_s
        self._topics = settings.topics
        self._items_topic = settings.topics.items_topic
        self._votes_topic = settings.topics.votes_topic
        self._states: dict[int, PartitionState] = {}
        self._dead_letters = DeadLetters(settings, self.tier, self._expected)

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._items_topic: Item, self._votes_topic: VoteBatch, self._topics.verdicts_topic: Verdict}

    # --- records -----------------------------------------------------------------------------
    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        outputs: list[Output] = []
        for record in records:
            state = self._states.get(record.partition)
            if state is None:
                continue  # revoked while the batch was in flight: not ours to decide
            if record.topic == self._items_topic:
                state.touched = True
                state.items_seen = max(state.items_seen, record.offset + 1)
                outputs += self._on_item(state, record.partition, record.value, record.offset, now)
            elif record.topic == self._votes_topic:
                state.touched = True
                state.votes_seen = max(state.votes_seen, record.offset + 1)
                outputs += self._on_batch(state, record, now)
            else:
                outputs += self._on_verdict(state, record, now)
        return outputs

    def _on_item(self, state: PartitionState, partition: int, item: Item, offset: int, now: float) -> list[Output]:
        pending = state.add_item(item, offset, now)
        if pending is None:
            if offset >= state.replayed_items:  # a record re-read after a restart is no duplicate
                _DUPLICATE.inc()
            return []
        letters = self._dead_letters.foreign_held(state, partition, pending, item, offset)
        if not pending.scheduled:
            self._waits.schedule(pending.first_seen + self._deadline_s, partition, item.id, pending)
            return letters + self._evaluate(state, partition, item.id, pending, now)
        # Its votes came first: its deadline may have passed already, so ask the full question.
        return letters + self._recheck(state, partition, item.id, now)

    def _on_batch(self, state: PartitionState, record: Record[VoteBatch], now: float) -> list[Output]:
        batch, partition, offset = record.value, record.partition, record.offset
        worker = batch.worker
        if worker not in self._expected:
            return self._dead_letters.unexpected(state, record)
        outputs: list[Output] = []
        late = 0
        for row in batch.votes:
            item_id = row[0]
            held = state.pending.get(item_id)
            if held is not None and held.item is not None and row[1] != held.item.task:
                outputs += self._dead_letters.foreign_row(state, record, row, held)
                continue
            pending = state.add_vote(item_id, worker, HeldVote(batch.model, batch.voted_at, row, offset), offset, now)
            if pending is None:
                late += state.settled(item_id)
            elif pending.item is None:
                if not pending.scheduled:
                    self._waits.schedule(now + self._deadline_s, partition, item_id, pending)
            else:
                outputs += self._evaluate(state, partition, item_id, pending, now)
        if late and offset >= state.replayed_votes:
            LATE_VOTES.labels(worker).inc(late)
        for item_id in self._waits.hear(state, worker, batch.next_offset, now):
            outputs += self._recheck(state, partition, item_id, now)
        return outputs

    def _on_verdict(self, state: PartitionState, record: Record[Verdict], now: float) -> list[Output]:
        """The judge's verdict becomes the label if it answers an escalation awaiting it."""
        verdict = record.value
        awaiting = state.awaiting.get(verdict.item_id)
        refusal = verdict_refusal(verdict, awaiting[0] if awaiting else None)
        if refusal is not None:
            return [self._dead_letters.refuse(record, *refusal)]
        state.decide(verdict.item_id, now)
        DECISIONS.labels("verdict_published", verdict.reason.value if verdict.reason else "").inc()
        observe_latency(verdict.task, verdict.decided_by.value, verdict.item_produced_at, verdict.source, now)
        return [Output(self._topics.labels_topic, record.raw, key(verdict.item_id))]

    # --- decisions ---------------------------------------------------------------------------
    def _policy(self, pending: Pending) -> Policy:
        assert pending.item is not None
        return self._policies.policy(pending.item.task, {w: vote.model for w, vote in pending.votes.items()})

    def _evaluate(
        self, state: PartitionState, partition: int, item_id: str, pending: Pending, now: float
    ) -> list[Output]:
        """After a new vote or the item: act if the policy decides; waiting is the checks' business.
        No policy decides on no ballots (the quorum is at most the expected workers), so an item
        that has none yet is not asked."""
        if not pending.ballots:
            return []
        policy = self._policy(pending)
        decision = policy.decide(pending.ballots, self._expected)
        if isinstance(decision, Wait):
            return []
        return self._outcomes.act(state, partition, item_id, pending, decision, policy, now)

    def _recheck(self, state: PartitionState, partition: int, item_id: str, now: float) -> list[Output]:
        """Decide, or stop waiting for missing votes if straggler detection says so, or say when
        to look again (a slow worker's vote or position, its silence, the deadline, the ceiling)."""
        pending = state.pending.get(item_id)
        if pending is None or pending.item is None:
            return []
        policy = self._policy(pending)
        ballots = pending.ballots
        decision = policy.decide(ballots, self._expected)
        if isinstance(decision, Wait):
            cause = self._waits.over(state, partition, item_id, pending, now)
            if cause is None:
                return []
            VOTE_WAITS_OVER.labels(cause).inc()
            decision = final(policy, ballots, self._expected)
        return self._outcomes.act(state, partition, item_id, pending, decision, policy, now)

    # --- time --------------------------------------------------------------------------------
    async def tick(self, now: float) -> list[Output]:
        await self._judge_budget.refresh(now)
        outputs: list[Output] = []
        if self._members is not None:
            await self._members.refresh(now)
        if now - self._reliability_polled_at >= 1.0:
            self._reliability_polled_at = now
            if self._reliability is not None:
                await self._reliability.poll()
            if self._rules_started:
                await self._rules.poll()
                # The owner of partition 0 is the one rule writer (consumers/tables/rules.py).
                outputs += self._rules.step(leader=0 in self._states)
        for state, partition, item_id in self._waits.due(self._states, now):
            outputs += self._recheck(state, partition, item_id, now)
        for state, partition, item_id in self._waits.silent(self._states, now):
            outputs += self._recheck(state, partition, item_id, now)
        relog_before = now - AWAITING_RELOG * self._window_s
        for state in self._states.values():
            state.expire_decided(now - self._window_s, self._config.max_decided)
            state.relog_awaiting(relog_before, now, 4 * MAX_LOG_ENTRIES)
        PENDING_ITEMS.set(sum(len(s.pending) for s in self._states.values()))
        AWAITING_VERDICTS.set(sum(len(s.awaiting) for s in self._states.values()))
        return outputs + self._log_records()

    def _log_records(self) -> list[Output]:
        """The log records of every partition touched in this transaction (see `AggregatorLog`)."""
        topic = self._topics.state_topic
        return [
            Output(topic, value, None, partition)
            for partition, state in self._states.items()
            for value in state.log_records()
        ]

    # --- commits -----------------------------------------------------------------------------
    def commit_offsets(self, consumed: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Items and votes up to the oldest undecided work of each partition (a restart re-reads
        it); verdicts as consumed (each is settled when read)."""
        gated = {}
        for tp, offset in consumed.items():
            state = self._states.get(tp.partition)
            if state is None:
                continue  # not ours any more: its new owner commits
            if tp.topic == self._items_topic:
                gated[tp] = state.items_gate(offset)
            elif tp.topic == self._votes_topic:
                gated[tp] = state.votes_gate(offset)
            else:
                gated[tp] = offset
        return gated

    def read_to_end(self, partitions: set[TopicPartition], now: float) -> None:
        for tp in partitions:
            state = self._states.get(tp.partition)
            if state is not None and tp.topic == self._votes_topic:
                state.votes_read_to = now

    def refused(self, topic: str, partition: int, offset: int) -> bool:
        """Counts a refused item or vote record as read, so this transaction's log record says
        so: a restart that re-reads it (its commit gated below it) then writes no second letter."""
        state = self._states.get(partition)
        if state is None or topic not in (self._items_topic, self._votes_topic):
            return True
        state.touched = True
        if topic == self._items_topic:
            state.items_seen = max(state.items_seen, offset + 1)
            return offset >= state.replayed_items
        state.votes_seen = max(state.votes_seen, offset + 1)
        return offset >= state.replayed_votes

    async def close(self) -> None:
        if self._reliability is not None:
            await self._reliability.stop()
        if self._members is not None:
            await self._members.close()
        await self._rules.stop()
        await self._judge_budget.close()

    def paused_partitions(self, owned: set[TopicPartition]) -> set[TopicPartition]:
        """Items or votes of a backlogged partition (`PartitionState.backlogged`, `max_pending`
        shared out between partitions). Verdicts are never paused: each one settles an item."""
        limit = max(1, self._config.max_pending // max(1, len(self._states)))
        paused = set()
        for tp in owned:
            state = self._states.get(tp.partition)
            if state is None or tp.topic not in (self._items_topic, self._votes_topic):
                continue
            if state.backlogged(items=tp.topic == self._items_topic, limit=limit):
                paused.add(tp)
        return paused

    # --- ownership ---------------------------------------------------------------------------
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        if self._reliability is not None:
            await self._reliability.start()
        if self._rules_started:
            await self._rules.start()  # the rules table, restored before any rule is built
        self._policies.build_all()
        numbers = {tp.partition for tp in partitions} - set(self._states)
        if not numbers:
            return
        restored = await self._restore(numbers)
        taken_at = self._clock()
        for number in numbers:
            state = restored.get(number) or PartitionState()
            state.since = taken_at
            state.items_seen = max(state.items_seen, state.replayed_items)
            state.votes_seen = max(state.votes_seen, state.replayed_votes)
            self._states[number] = state

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for number in {tp.partition for tp in partitions}:
            self._states.pop(number, None)

    async def _restore_from_log(self, numbers: set[int]) -> dict[int, PartitionState]:
        return await restore_from_log(self._settings, numbers, self._clock() - self._window_s)


def build(settings: Settings, tasks: TaskRegistry) -> AggregatorProcessor:
    """The aggregator the settings describe, wired to Kafka for reliability, judge backlog,
    the target policy's shared rules and the worker groups' membership."""
    probe = KafkaBacklogProbe(settings, settings.topics.judge_group) if settings.aggregator.judge_max_backlog else None
    reliability = ReliabilityTotals(settings, tasks)
    rules = RuleTable(settings, tasks)
    members = GroupWatch(settings, settings.aggregator.workers)
    judge_budget = JudgeBudget(settings.aggregator, probe)
    return AggregatorProcessor(
        settings, tasks, reliability=reliability, judge_budget=judge_budget, rules=rules, members=members
    )


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one aggregator process until SIGINT/SIGTERM (or `stop`): the `tribunal aggregator` entry."""
    configure_logging(settings.log_format, settings.log_level, tier="aggregator")
    tune_gc()
    await serve_aggregator(settings, stop=stop)


async def serve_aggregator(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the aggregator inside the caller's own asyncio program; nothing global is touched
    (see `tribunal.consumers.worker.serve_worker`)."""
    tasks = settings.tasks()
    context = settings.decode_context(tasks)
    await serve(settings, build(settings, tasks), group_id=group_id(settings), decode_context=context, stop=stop)
