"""The aggregator's per-partition bookkeeping: pending items, decided ids, commit gates, worker
positions, and items parked on a slow worker. No Kafka, no policy, no clock.

Durability (see `AggregatorLog`): undecided work lives only in memory. The input offsets the
aggregator commits stop at the oldest undecided item (`items_gate`) and at the oldest votes
record holding a vote for an undecided item (`votes_gate`), so a restart, crash or rebalance
re-reads exactly that work from `items`/`votes`. Decided ids are logged in the transaction that
decides them and remembered for a window, so re-read records of decided items are recognised.

Escalated items awaiting the judge's verdict are settled for the gates (no vote counts now), but
the ticket the verdict must carry lives on: logged with the escalation, logged again every
`AWAITING_RELOG_S` fraction of the window while the verdict is awaited (the log is time-retained),
and ended by the item's decided entry once its verdict is published. A restore therefore has the
ticket of every escalation still awaiting a verdict, however long the judge takes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from tribunal.consumers.aggregator.stragglers import Heard, heard_again
from tribunal.consumers.policy.ballots import Ballot, HeldVote
from tribunal.schemas.messages import ROW_CONFIDENCE, ROW_LABEL, ROW_TASK, SCHEMA_VERSION, AggregatorLog, Item

__all__ = ["AWAITING_RELOG", "MAX_LOG_ENTRIES", "PartitionState", "Pending"]


# An awaited escalation is logged again once its last entry is this share of the window old:
# the log keeps a record at least the window (plus a minute), so one entry is always retained.
AWAITING_RELOG = 0.4
# Entries per log record: a transaction that decides or re-logs more writes several records,
# each well within the record size limit (an entry is at most ~1.1 KB, typically ~60 bytes).
MAX_LOG_ENTRIES = 500


@dataclass(slots=True)
class Pending:
    """An undecided item: its record (once read), when first seen, and the votes so far."""

    item: Item | None
    first_seen: float
    offset: int | None = None  # of the item on the items partition
    vote_at: int | None = None  # offset of the oldest votes record holding one of its votes
    votes: dict[str, HeldVote] = field(default_factory=dict)
    # (worker, vote) held before the item came whose worker already holds a vote for another
    # task: one of them is forged, and only the item's task tells which. Without these, a forged
    # vote read first would take the genuine vote's place and stall the item until its deadline.
    strays: list[tuple[str, HeldVote]] = field(default_factory=list)
    ballots: list[Ballot] = field(default_factory=list)  # the votes as the policy reads them
    scheduled: bool = False  # its deadline look was queued
    check_at: float | None = None  # when the aggregator looks at it next (its earliest queued look)


@dataclass(slots=True)
class PartitionState:
    """What one partition number knows. Gates are FIFO queues of (offset, item id), stale
    entries (decided ids) dropped lazily from the front, so each costs O(1) amortised."""

    since: float = 0.0  # when this instance took the partition (unheard workers count from it)
    votes_read_to: float | None = None  # when we last had read the votes partition to its end
    pending: dict[str, Pending] = field(default_factory=dict)
    decided: dict[str, float] = field(default_factory=dict)  # id -> decided_at
    awaiting: dict[str, tuple[str, float]] = field(default_factory=dict)  # escalated id -> (ticket, at)
    heard: dict[str, Heard] = field(default_factory=dict)  # worker -> latest position record
    parked: dict[str, deque[str]] = field(default_factory=dict)  # slow worker -> items waiting on it
    items_seen: int = 0  # next offset read on the items partition
    votes_seen: int = 0
    replayed_items: int = 0  # below these offsets, records were read before the last restart
    replayed_votes: int = 0
    waiting: int = 0  # pending items that have their item (waiting for votes)
    orphans: int = 0  # pending ids with votes but no item yet (the votes partition is ahead)
    newly_decided: list[tuple[str, float]] = field(default_factory=list)  # since the last log record
    newly_escalated: list[tuple[str, str, float]] = field(default_factory=list)  # (id, ticket, at) to log
    touched: bool = False  # read or decided something since the last log record
    _decided_order: deque[tuple[float, str]] = field(default_factory=deque)  # oldest first
    _awaiting_logged: deque[tuple[float, str]] = field(default_factory=deque)  # (logged at, id), oldest first
    _logged_at: dict[str, float] = field(default_factory=dict)  # awaited id -> when its entry was last logged
    _item_queue: deque[tuple[int, str]] = field(default_factory=deque)
    _vote_queue: deque[tuple[int, str]] = field(default_factory=deque)

    # --- pending items -----------------------------------------------------------------------
    def add_item(self, item: Item, offset: int, now: float) -> Pending | None:
        """Record `item` read at `offset`; None if its id is settled or already has its item."""
        if self.settled(item.id):
            return None
        pending = self.pending.get(item.id)
        if pending is None:
            pending = self.pending[item.id] = Pending(item, now, offset)
        elif pending.item is not None:
            return None  # the same id twice before a decision: the first one counts
        else:
            pending.item, pending.offset = item, offset
            self.orphans -= 1
        self.waiting += 1
        self._item_queue.append((offset, item.id))
        return pending

    def add_vote(self, item_id: str, worker: str, vote: HeldVote, record_offset: int, now: float) -> Pending | None:
        """Record one vote read in the votes record at `record_offset`; None if it changes nothing
        (settled id, or a second vote of the same worker)."""
        if self.settled(item_id):
            return None
        pending = self.pending.get(item_id)
        if pending is None:
            pending = self.pending[item_id] = Pending(None, now)
            self.orphans += 1
        held = pending.votes.get(worker)
        if held is not None:
            if pending.item is None and _another_task(pending, worker, held, vote):
                pending.strays.append((worker, vote))
            return None
        self._count(pending, worker, vote)
        if pending.vote_at is None:
            pending.vote_at = record_offset
            self._vote_queue.append((record_offset, item_id))
        return pending

    def settled(self, item_id: str) -> bool:
        """Decided, or escalated and awaiting the judge: no vote or copy of the item counts now."""
        return item_id in self.decided or item_id in self.awaiting

    def decide(self, item_id: str, now: float) -> None:
        """The item is decided (its label published): forget its votes and any awaited verdict,
        remember its id, log it."""
        if self.pending.pop(item_id, None) is not None:
            self.waiting -= 1
        if self.awaiting.pop(item_id, None) is not None:
            del self._logged_at[item_id]
        self.remember(item_id, now)
        self.newly_decided.append((item_id, now))
        self.touched = True

    def escalate(self, item_id: str, ticket: str, now: float) -> None:
        """The item went to the judge: forget its votes, await a verdict carrying `ticket`, log it."""
        if self.pending.pop(item_id, None) is not None:
            self.waiting -= 1
        self.await_verdict(item_id, ticket, now, now)
        self.newly_escalated.append((item_id, ticket, now))
        self.touched = True

    def await_verdict(self, item_id: str, ticket: str, escalated_at: float, logged_at: float) -> None:
        """An escalation awaiting its verdict (also how a restore replays the log)."""
        self.awaiting[item_id] = (ticket, escalated_at)
        self._logged_at[item_id] = logged_at
        self._awaiting_logged.append((logged_at, item_id))

    def relog_awaiting(self, before: float, now: float, limit: int) -> int:
        """Log again (at most `limit` of) the awaited escalations last logged before `before`, so
        the time-retained log never loses a ticket whose verdict is still to come."""
        queue, count = self._awaiting_logged, 0
        while queue and queue[0][0] < before and count < limit:
            logged_at, item_id = queue.popleft()
            entry = self.awaiting.get(item_id)
            if entry is None or self._logged_at.get(item_id) != logged_at:
                continue  # its verdict came, or it was logged again since (a later queue entry)
            self._logged_at[item_id] = now
            queue.append((now, item_id))
            self.newly_escalated.append((item_id, *entry))
            self.touched = True
            count += 1
        return count

    def remember(self, item_id: str, decided_at: float) -> None:
        """A decided id (also how a restore replays the log)."""
        if item_id not in self.decided:
            self._decided_order.append((decided_at, item_id))
        self.decided[item_id] = decided_at

    @staticmethod
    def _count(pending: Pending, worker: str, vote: HeldVote) -> None:
        pending.votes[worker] = vote
        row = vote.row  # not the properties: this runs for every vote
        pending.ballots.append(Ballot(worker, row[ROW_LABEL], row[ROW_CONFIDENCE]))

    def settle_strays(self, pending: Pending) -> list[tuple[str, HeldVote]]:
        """Once the item came (and votes for other tasks were dropped): each stray of the item's
        task takes its worker's empty place; the others are returned, to be refused."""
        task = pending.item.task if pending.item is not None else None
        refused = []
        for worker, vote in pending.strays:
            if vote.row[ROW_TASK] == task and worker not in pending.votes:
                self._count(pending, worker, vote)
            else:
                refused.append((worker, vote))
        pending.strays.clear()
        return refused

    def drop_vote(self, pending: Pending, worker: str) -> HeldVote:
        """Take one held vote out of an undecided item (refused once its item came)."""
        vote = pending.votes.pop(worker)
        pending.ballots = [b for b in pending.ballots if b.worker != worker]
        return vote

    def drop(self, item_id: str) -> None:
        """Forget undecided votes whose item never came (no label: there is nothing to label)."""
        if self.pending.pop(item_id, None) is not None:
            self.orphans -= 1

    # --- positions and parking ---------------------------------------------------------------
    def hear(self, worker: str, next_offset: int, now: float) -> Heard:
        heard = self.heard[worker] = heard_again(self.heard.get(worker), next_offset, now)
        return heard

    def heard_of(self, worker: str) -> Heard:
        """What is known of `worker` here; unheard workers count as heard when we took over."""
        return self.heard.get(worker) or Heard(0, self.since)

    def park(self, worker: str, item_id: str) -> None:
        self.parked.setdefault(worker, deque()).append(item_id)

    def unpark_passed(self, worker: str, next_offset: int) -> Iterator[str]:
        """Yield (and unpark) items parked on `worker` below its new position, front first."""
        queue = self.parked.get(worker)
        while queue:
            pending = self.pending.get(queue[0])
            if pending is not None and pending.offset is not None and pending.offset >= next_offset:
                return
            item_id = queue.popleft()
            if pending is not None:
                yield item_id

    def unpark_all(self, worker: str) -> list[str]:
        """Every undecided item parked on `worker` (it fell silent), unparked."""
        queue = self.parked.pop(worker, deque())
        return [item_id for item_id in queue if item_id in self.pending]

    def backlogged(self, *, items: bool, limit: int) -> bool:
        """Whether to stop reading this partition's items (`items`) or votes for now: items while
        `limit` items wait for votes, votes while `limit` ids wait for their items (a VoteBatch
        covers hundreds of items, so the votes can run far ahead). Never both: votes arrive in
        item order, so one side's backlog is the other side's progress."""
        if items:
            return self.waiting >= limit and self.orphans < limit
        return self.orphans >= limit

    # --- commit gates and expiry -------------------------------------------------------------
    def items_gate(self, consumed: int) -> int:
        """The items offset safe to commit: the oldest undecided item's, else `consumed`."""
        queue = self._item_queue
        while queue and not self._holds(queue[0], by_vote=False):
            queue.popleft()
        return min(queue[0][0], consumed) if queue else consumed

    def votes_gate(self, consumed: int) -> int:
        """The votes offset safe to commit: the oldest record still holding an undecided vote."""
        queue = self._vote_queue
        while queue and not self._holds(queue[0], by_vote=True):
            queue.popleft()
        return min(queue[0][0], consumed) if queue else consumed

    def _holds(self, entry: tuple[int, str], *, by_vote: bool) -> bool:
        pending = self.pending.get(entry[1])
        if pending is None:
            return False
        return (pending.vote_at if by_vote else pending.offset) == entry[0]

    def expire_decided(self, horizon: float, max_decided: int) -> None:
        """Forget decided ids older than `horizon`, and the oldest beyond `max_decided`."""
        order = self._decided_order  # a deque: dict iteration from a deleted front is O(n)
        while order:
            decided_at, item_id = order[0]
            if decided_at > horizon and len(order) <= max_decided:
                return
            order.popleft()
            del self.decided[item_id]

    def log_records(self) -> list[bytes]:
        """This transaction's `AggregatorLog` records (encoded straight from the state; several
        when it holds more than `MAX_LOG_ENTRIES` entries), or none if the partition was not
        touched since the last one. Escalations come before decisions, in order, so a replay
        that reads them in order ends where this state is."""
        if not self.touched:
            return []
        escalated, decided = self.newly_escalated, self.newly_decided
        self.newly_escalated, self.newly_decided, self.touched = [], [], False
        value = {"schema_version": SCHEMA_VERSION, "items_to": self.items_seen, "votes_to": self.votes_seen}
        records = []
        for start in range(0, max(1, len(escalated)), MAX_LOG_ENTRIES):
            chunk = escalated[start : start + MAX_LOG_ENTRIES]
            if chunk or not decided:
                records.append(orjson.dumps({**value, "escalated": chunk}))
        for start in range(0, len(decided), MAX_LOG_ENTRIES):
            records.append(orjson.dumps({**value, "decided": decided[start : start + MAX_LOG_ENTRIES]}))
        return records

    def replay(self, entry: AggregatorLog, horizon: float, logged_at: float) -> None:
        """Take in one log record while restoring (ids decided before `horizon` are forgotten;
        awaited escalations are kept whatever their age, until their decided entry)."""
        for item_id, ticket, escalated_at in entry.escalated:
            if item_id not in self.decided:
                self.await_verdict(item_id, ticket, escalated_at, logged_at)
        for item_id, decided_at in entry.decided:
            if self.awaiting.pop(item_id, None) is not None:
                del self._logged_at[item_id]
            if decided_at > horizon:
                self.remember(item_id, decided_at)
        self.replayed_items = max(self.replayed_items, entry.items_to)
        self.replayed_votes = max(self.replayed_votes, entry.votes_to)


# At most this many strays per item: a flood of forged votes for an unknown id stays bounded.
MAX_STRAYS = 16


def _another_task(pending: Pending, worker: str, held: HeldVote, vote: HeldVote) -> bool:
    """`vote` names another task than `worker`'s held vote and its strays, and there is room."""
    task = vote.row[ROW_TASK]
    if held.row[ROW_TASK] == task or len(pending.strays) >= MAX_STRAYS:
        return False
    return all(not (w == worker and v[2][1] == task) for w, v in pending.strays)
