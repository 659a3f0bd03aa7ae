"""Aggregator tier: joins `items`, `votes` and `verdicts` per item id and labels each item once.

`items`, `votes` and `verdicts` are co-partitioned (same partition count, keyed by item id) and
assigned by range, so one instance owns partition number p of all three. For each item it asks
the pure policy (`consumers.decision`) whether to wait, accept the workers' label (a `Verdict`
to `labels`) or escalate (a `JudgeRequest` to `judge`, with a fresh ticket); ticks escalate
items whose deadline passed. The judge's verdict comes back on `verdicts` and is published to
`labels` only if it carries the ticket of an escalation still awaiting it: the aggregator is the
one writer of `labels`, so a request or verdict for an item it never escalated labels nothing.

Authority: a vote counts only for an item of the vote's task, from an expected worker; refused
votes and unsolicited verdicts go to their topic's dead-letter topic. This tier owns the dead
letters of `items` (workers skip bad items without a letter), so each bad record makes one.

State (pending items with their votes, recently decided ids) lives in memory per partition and
in a compacted changelog topic, partition p for partition p, written in the SAME transaction as
the outputs and the input offsets. On assignment a partition's state is restored from its
changelog (read_committed) before any of its records are processed, so a crash, restart or
rebalance neither loses nor repeats a decision. Decided ids are forgotten after a window.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from pydantic import BaseModel

from tribunal.consumers.authority import foreign_votes, verdict_refusal, vote_refusal
from tribunal.consumers.decision import Accept, Escalate, Policy, audited, ballots
from tribunal.consumers.judge_gate import JudgeGate, KafkaBacklogProbe
from tribunal.consumers.policy_book import PolicyBook
from tribunal.consumers.reliability_feed import ReliabilityFollower
from tribunal.consumers.rule_feed import RuleKeeper
from tribunal.consumers.verdicts import fallback_verdict
from tribunal.core.logs import configure_logging, get_logger
from tribunal.core.metrics import AWAITING_VERDICTS, DECISIONS, LATE_VOTES, PENDING_ITEMS, SKIPPED_RECORDS
from tribunal.core.runtime import DeadLetterSource, Output, Processor, Record, dead_letter, serve
from tribunal.core.settings import Settings
from tribunal.core.topics import read_to_end
from tribunal.schemas.codec import DecodeError, decode, encode, key
from tribunal.schemas.messages import (
    MAX_VOTES,
    AggregatorEntry,
    DecidedBy,
    EscalationReason,
    Item,
    JudgeRequest,
    Verdict,
    Vote,
)
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["AggregatorProcessor", "audited", "group_id", "run", "serve_aggregator"]

log = get_logger("tribunal.aggregator")


def group_id(settings: Settings) -> str:
    return settings.topics.aggregator_group


@dataclass(slots=True)
class Pending:
    item: Item | None
    first_seen: float
    votes: dict[str, Vote] = field(default_factory=dict)
    # Votes held before the item arrived whose worker already holds a vote for another task: one
    # of them is forged, and only the item's task tells which. Without this, a forged vote sent
    # first would take the genuine vote's place and stall the item until its deadline.
    strays: list[Vote] = field(default_factory=list)

    def all_votes(self) -> tuple[Vote, ...]:
        """Votes by worker name, then strays: the order the changelog keeps and `restored` reads."""
        return tuple(self.votes[w] for w in sorted(self.votes)) + tuple(self.strays)

    @classmethod
    def restored(cls, item: Item | None, first_seen: float, votes: tuple[Vote, ...]) -> Pending:
        pending = cls(item, first_seen)
        for vote in votes:
            if vote.worker in pending.votes:
                pending.strays.append(vote)
            else:
                pending.votes[vote.worker] = vote
        return pending


@dataclass(slots=True)
class PartitionState:
    """What one partition number knows: items waiting for votes, ids decided recently."""

    pending: dict[str, Pending] = field(default_factory=dict)
    decided: dict[str, float] = field(default_factory=dict)  # insertion order = decision order
    awaiting: dict[str, tuple[str, float]] = field(default_factory=dict)  # escalated: (ticket, at)
    dirty: set[str] = field(default_factory=set)  # ids whose changelog entry must be rewritten

    def settled(self, item_id: str) -> bool:
        """Decided, or escalated and awaiting the judge: no vote or copy of the item counts now."""
        return item_id in self.decided or item_id in self.awaiting

    def apply(self, item_id: str, entry: AggregatorEntry | None) -> None:
        """Replay one changelog record (None = tombstone) into this state."""
        self.pending.pop(item_id, None)
        self.decided.pop(item_id, None)
        self.awaiting.pop(item_id, None)
        if entry is None:
            return
        if entry.decided_at is not None and entry.ticket is not None:
            self.awaiting[item_id] = (entry.ticket, entry.decided_at)
        elif entry.decided_at is not None:
            self.decided[item_id] = entry.decided_at
        else:
            self.pending[item_id] = Pending.restored(entry.item, entry.first_seen, entry.votes)


Restorer = Callable[[set[int]], Awaitable[dict[int, PartitionState]]]


class AggregatorProcessor(Processor):
    tier = "aggregator"

    def __init__(
        self,
        settings: Settings,
        tasks: TaskRegistry,
        *,
        restore: Restorer | None = None,
        follower: ReliabilityFollower | None = None,
        gate: JudgeGate | None = None,
        keeper: RuleKeeper | None = None,
    ) -> None:
        """`restore` rebuilds partitions' state (default: from the changelog topic); `follower`
        supplies learned reliability (default: the prior only); `gate` the judge budget;
        `keeper` the target policy's shared rules (default: this process's own, unpublished)."""
        self._settings = settings
        self._tasks = tasks
        self.batch_size = settings.aggregator.batch_size
        self._restore = restore or self._restore_from_changelog
        self._config = settings.aggregator
        self._follower = follower
        self._gate = gate or JudgeGate(settings.aggregator)
        self._keeper = keeper or RuleKeeper(settings, tasks)
        self._keeper_started = keeper is not None
        self._book = PolicyBook(settings.aggregator, tasks, self._keeper, follower)
        self._book.validate()
        self._reliability_polled_at = float("-inf")
        self._expected = tuple(settings.aggregator.workers)
        self._topics = settings.topics
        self._states: dict[int, PartitionState] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # (due, partition, item id)

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        return {self._topics.items_topic: Item, self._topics.votes_topic: Vote, self._topics.verdicts_topic: Verdict}

    # --- records -----------------------------------------------------------------------------
    async def process(self, records: Sequence[Record[Any]], now: float) -> list[Output]:
        outputs: list[Output] = []
        for record in records:
            state = self._states.get(record.partition)
            if state is None:
                continue  # revoked while the batch was in flight: not ours to decide
            if isinstance(record.value, Item):
                outputs += self._on_item(state, record.partition, record.value, now)
            elif isinstance(record.value, Vote):
                outputs += self._on_vote(state, record, now)
            else:
                outputs += self._on_verdict(state, record, now)
        return outputs

    def _on_item(self, state: PartitionState, partition: int, item: Item, now: float) -> list[Output]:
        if state.settled(item.id):
            DECISIONS.labels("duplicate_item", "").inc()
            return []
        pending = state.pending.get(item.id)
        if pending is None:
            pending = state.pending[item.id] = Pending(item, now)
            self._schedule(now, partition, item.id)
        elif pending.item is not None:
            return []  # the same id sent twice before a decision: the first one counts
        else:
            pending.item = item
        state.dirty.add(item.id)
        return self._drop_foreign_votes(pending, partition, item) + self._evaluate(state, partition, item.id, now)

    def _on_vote(self, state: PartitionState, record: Record[Vote], now: float) -> list[Output]:
        vote, partition = record.value, record.partition
        pending = state.pending.get(vote.item_id)
        refusal = vote_refusal(vote, self._expected, pending.item if pending else None)
        if refusal is not None:
            return [self._refuse(record, *refusal)]
        if state.settled(vote.item_id):
            LATE_VOTES.labels(vote.worker).inc()
            return []
        if pending is None:
            pending = state.pending[vote.item_id] = Pending(None, now)
            self._schedule(now, partition, vote.item_id)
        held = pending.votes.get(vote.worker)
        if held is not None:
            again = held.task == vote.task or any(
                s.worker == vote.worker and s.task == vote.task for s in pending.strays
            )
            if pending.item is not None or again:
                return []  # the same worker's vote again: the first one counts
            if len(pending.votes) + len(pending.strays) >= MAX_VOTES:
                return [self._refuse(record, "task_mismatch", "too many votes for other tasks held before the item")]
            pending.strays.append(vote)
            state.dirty.add(vote.item_id)
            return []
        pending.votes[vote.worker] = vote
        state.dirty.add(vote.item_id)
        return self._evaluate(state, partition, vote.item_id, now)

    def _drop_foreign_votes(self, pending: Pending, partition: int, item: Item) -> list[Output]:
        """Held votes for another task than their item's: dead-lettered as decoded (no offset kept)."""
        letters = []
        foreign = [pending.votes.pop(worker) for worker in foreign_votes(pending.votes, item)]
        for stray in pending.strays:
            if stray.task == item.task and stray.worker not in pending.votes:
                pending.votes[stray.worker] = stray
            else:
                foreign.append(stray)
        pending.strays.clear()
        for vote in foreign:
            why = f"vote for task {vote.task!r} on an item of task {item.task!r}, held before the item arrived"
            topic = self._topics.votes_topic
            letters.append(self._letter(topic, partition, None, vote.item_id, encode(vote), "task_mismatch", why))
        return letters

    def _on_verdict(self, state: PartitionState, record: Record[Verdict], now: float) -> list[Output]:
        """The judge's verdict becomes the label if it answers an escalation awaiting it."""
        verdict = record.value
        awaiting = state.awaiting.get(verdict.item_id)
        refusal = verdict_refusal(verdict, awaiting[0] if awaiting else None)
        if refusal is not None:
            return [self._refuse(record, *refusal)]
        del state.awaiting[verdict.item_id]
        state.decided[verdict.item_id] = now
        state.dirty.add(verdict.item_id)
        DECISIONS.labels("verdict_published", verdict.reason.value if verdict.reason else "").inc()
        return [Output(self._topics.labels_topic, record.raw, key(verdict.item_id))]

    def _refuse(self, record: Record[Any], kind: str, why: str) -> Output:
        return self._letter(record.topic, record.partition, record.offset, record.value.item_key, record.raw, kind, why)

    def _letter(
        self, topic: str, partition: int, offset: int | None, item_id: str, raw: bytes, kind: str, why: str
    ) -> Output:
        DECISIONS.labels(kind, "").inc()
        source = DeadLetterSource(topic, partition, offset, key(item_id), raw)
        limit = self._settings.max_message_bytes
        return dead_letter(self._topics.dlq(topic), self.tier, source, kind, why, max_message_bytes=limit)

    def _schedule(self, first_seen: float, partition: int, item_id: str) -> None:
        """Re-examine the item at its deadline."""
        heapq.heappush(self._deadlines, (first_seen + self._config.deadline_ms / 1000.0, partition, item_id))

    # --- decisions ---------------------------------------------------------------------------
    def _evaluate(self, state: PartitionState, partition: int, item_id: str, now: float) -> list[Output]:
        pending = state.pending[item_id]
        if pending.item is None:
            return []  # no decision without the item: the judge would need its text
        ballots_now = ballots(vote for _, vote in sorted(pending.votes.items()))
        elapsed_ms = (now - pending.first_seen) * 1000.0
        policy = self._book.policy(pending.item.task, {v.worker: v.model for v in pending.votes.values()})
        decision = policy.decide(ballots_now, self._expected, elapsed_ms)
        rate = self._book.audit_rate(policy)
        ticket = None
        if isinstance(decision, Accept):
            outputs = [self._accept(pending.item, pending, decision, policy, rate)]
            if audited(item_id, self._config.audit_rate if rate is None else rate) and self._gate.admit(now):
                outputs.append(self._escalate(pending.item, pending, EscalationReason.AUDIT, policy, rate)[0])
        elif isinstance(decision, Escalate):
            escalation, ticket = self._escalate(pending.item, pending, decision.reason, policy, rate, now, partition)
            outputs = [escalation]
        else:
            return []
        del state.pending[item_id]
        if ticket is None:
            state.decided[item_id] = now
        else:
            state.awaiting[item_id] = (ticket, now)
        state.dirty.add(item_id)
        return outputs

    def _accept(self, item: Item, pending: Pending, decision: Accept, policy: Policy, rate: float | None) -> Output:
        DECISIONS.labels("accept", "").inc()
        verdict = Verdict(
            item_id=item.id,
            task=item.task,
            label=decision.label,
            decided_by=DecidedBy.WORKERS,
            confidence=decision.confidence,
            votes=tuple(pending.votes[w] for w in sorted(pending.votes)),
            policy=policy.name,
            policy_version=policy.version,
            audit_rate=rate,
            gold=item.gold,
            item_produced_at=item.produced_at,
        )
        return Output(self._topics.labels_topic, encode(verdict), key(item.id))

    def _escalate(
        self,
        item: Item,
        pending: Pending,
        reason: EscalationReason,
        policy: Policy,
        rate: float | None,
        now: float | None = None,
        partition: int | None = None,
    ) -> tuple[Output, str | None]:
        """A JudgeRequest and the ticket its verdict must carry (None for audits, whose verdicts
        never label); or, when `now` is given and the judge budget is spent, a fallback label."""
        admitted = now is None or self._gate.admit(now)
        ticket = secrets.token_hex(8) if admitted and partition is not None else None
        request = JudgeRequest(
            item=item,
            votes=tuple(pending.votes[w] for w in sorted(pending.votes)),
            reason=reason,
            policy=policy.name,
            policy_version=policy.version,
            partition=partition if ticket else None,
            ticket=ticket,
            audit_rate=rate,
        )
        if not admitted:
            DECISIONS.labels("fallback_budget", reason.value).inc()
            verdict = fallback_verdict(request, self._tasks)
            return Output(self._topics.labels_topic, encode(verdict), key(item.id)), None
        DECISIONS.labels("escalate", reason.value).inc()
        return Output(self._topics.judge_topic, encode(request), key(item.id)), ticket

    # --- time --------------------------------------------------------------------------------
    async def tick(self, now: float) -> list[Output]:
        await self._gate.refresh(now)
        outputs: list[Output] = []
        if now - self._reliability_polled_at >= 1.0:
            self._reliability_polled_at = now
            if self._follower is not None:
                await self._follower.poll()
            if self._keeper_started:
                await self._keeper.poll()
                # The owner of partition 0 is the one rule writer (consumers/rule_feed.py).
                outputs += self._keeper.step(leader=0 in self._states)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, partition, item_id = heapq.heappop(self._deadlines)
            state = self._states.get(partition)
            pending = state.pending.get(item_id) if state else None
            if state is None or pending is None:
                continue
            if pending.item is not None:
                outputs += self._evaluate(state, partition, item_id, now)
            elif now - pending.first_seen >= self._config.decided_window_s:
                del state.pending[item_id]  # votes whose item never came: nothing to label
                state.dirty.add(item_id)
                DECISIONS.labels("orphan_votes_expired", "").inc()
            else:
                heapq.heappush(
                    self._deadlines,
                    (pending.first_seen + self._config.decided_window_s, partition, item_id),
                )
        for state in self._states.values():
            self._expire_decided(state, now)
        PENDING_ITEMS.set(sum(len(s.pending) for s in self._states.values()))
        AWAITING_VERDICTS.set(sum(len(s.awaiting) for s in self._states.values()))
        return outputs + self._changelog()

    def _expire_decided(self, state: PartitionState, now: float) -> None:
        horizon = now - self._config.decided_window_s
        while state.decided:
            item_id, decided_at = next(iter(state.decided.items()))
            if decided_at > horizon and len(state.decided) <= self._config.max_decided:
                return
            del state.decided[item_id]
            state.dirty.add(item_id)

    def _changelog(self) -> list[Output]:
        """One record per id touched since the last transaction: its state now, or a tombstone."""
        outputs = []
        topic = self._topics.state_topic
        for partition, state in self._states.items():
            for item_id in state.dirty:
                outputs.append(Output(topic, self._entry(state, item_id), key(item_id), partition))
            state.dirty.clear()
        return outputs

    @staticmethod
    def _entry(state: PartitionState, item_id: str) -> bytes | None:
        pending = state.pending.get(item_id)
        if pending is not None:
            return encode(AggregatorEntry(item=pending.item, votes=pending.all_votes(), first_seen=pending.first_seen))
        if item_id in state.awaiting:
            ticket, at = state.awaiting[item_id]
            return encode(AggregatorEntry(first_seen=at, decided_at=at, ticket=ticket))
        decided_at = state.decided.get(item_id)
        if decided_at is not None:
            return encode(AggregatorEntry(first_seen=decided_at, decided_at=decided_at))
        return None

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
        await self._keeper.stop()
        await self._gate.close()

    def paused_topics(self) -> frozenset[str]:
        pending = sum(len(s.pending) for s in self._states.values())
        return frozenset({self._topics.items_topic}) if pending >= self._config.max_pending else frozenset()

    # --- ownership ---------------------------------------------------------------------------
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        if self._follower is not None:
            await self._follower.start()
        if self._keeper_started:
            await self._keeper.start()
        numbers = {tp.partition for tp in partitions} - set(self._states)
        if not numbers:
            return
        restored = await self._restore(numbers)
        for number, state in restored.items():
            self._states[number] = state
            for item_id, pending in state.pending.items():
                self._schedule(pending.first_seen, number, item_id)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for number in {tp.partition for tp in partitions}:
            self._states.pop(number, None)

    async def _restore_from_changelog(self, numbers: set[int]) -> dict[int, PartitionState]:
        """Rebuild the state of `numbers` from the committed changelog, to its end."""
        states = {n: PartitionState() for n in numbers}
        context = self._settings.decode_context()
        tps = [TopicPartition(self._topics.state_topic, n) for n in sorted(numbers)]
        async for record in read_to_end(self._settings, tps):
            try:
                item_id = (record.key or b"").decode("utf-8")
                entry = None if record.value is None else decode(record.value, AggregatorEntry, context)
            except (UnicodeDecodeError, DecodeError) as exc:  # not ours: someone else wrote it
                SKIPPED_RECORDS.labels(self.tier, record.topic, getattr(exc, "kind", "decode")).inc()
                log.warning("changelog_entry_skipped", partition=record.partition, offset=record.offset, error=str(exc))
                continue
            if item_id:
                states[record.partition].apply(item_id, entry)
        log.info("state_restored", partitions=sorted(numbers), pending=sum(len(s.pending) for s in states.values()),
                 decided=sum(len(s.decided) for s in states.values()),
                 awaiting=sum(len(s.awaiting) for s in states.values()))  # fmt: skip
        return states


def build(settings: Settings, tasks: TaskRegistry) -> AggregatorProcessor:
    """The aggregator the settings describe, wired to Kafka for reliability and judge backlog."""
    probe = KafkaBacklogProbe(settings, settings.topics.judge_group) if settings.aggregator.judge_max_backlog else None
    follower = ReliabilityFollower(settings, tasks)
    keeper = RuleKeeper(settings, tasks)
    return AggregatorProcessor(
        settings, tasks, follower=follower, gate=JudgeGate(settings.aggregator, probe), keeper=keeper
    )


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one aggregator process until SIGINT/SIGTERM (or `stop`): the `tribunal aggregator` entry."""
    configure_logging(settings.log_format, settings.log_level, tier="aggregator")
    await serve_aggregator(settings, stop=stop)


async def serve_aggregator(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the aggregator inside the caller's own asyncio program; nothing global is touched
    (see `tribunal.consumers.worker.serve_worker`)."""
    tasks = settings.tasks()
    context = settings.decode_context(tasks)
    await serve(settings, build(settings, tasks), group_id=group_id(settings), decode_context=context, stop=stop)
