"""When the aggregator looks at an undecided item again, and whether its wait for missing votes is
over: the bookkeeping around `consumers.aggregator.stragglers` (which is pure) for every owned partition.

Looks are queued in one heap of (when, partition, item id); an item keeps only its earliest look
(`Pending.check_at`), later entries are skipped when they come up. Each look is at a moment the
answer can change: the deadline, a slow worker's silence or ceiling, the window after which
votes whose item never came are dropped. Items waiting on one slow worker are parked on it, and
looked at again when its position passes them or it falls silent.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import replace

from tribunal.consumers.aggregator.membership import Membership
from tribunal.consumers.aggregator.state import PartitionState, Pending
from tribunal.consumers.aggregator.stragglers import Heard, NotYet, StragglerRule, Waiting, wait_status
from tribunal.core.metrics import DECISIONS

__all__ = ["WaitSchedule"]

_ORPHANS = DECISIONS.labels("orphan_votes_expired", "")


class WaitSchedule:
    """The queued looks of one aggregator, and what it knows of the workers' positions."""

    def __init__(
        self, rule: StragglerRule, expected: tuple[str, ...], members: Membership | None, window_s: float
    ) -> None:
        self.rule = rule
        self._expected = expected
        self._members = members
        self._window_s = window_s
        self._checks: list[tuple[float, int, str]] = []  # (when, partition, item id): look again then
        self._moved: dict[str, float] = {}  # worker -> when its position last moved on any partition

    def schedule(self, when: float, partition: int, item_id: str, pending: Pending) -> None:
        """Queue the item's first look (its deadline)."""
        pending.scheduled = True
        self.check_at(when, partition, item_id, pending)

    def check_at(self, when: float, partition: int, item_id: str, pending: Pending) -> None:
        """Look at the item again at `when`, unless an earlier look is already due."""
        if pending.check_at is None or when < pending.check_at:
            pending.check_at = when
            heapq.heappush(self._checks, (when, partition, item_id))

    def hear(self, state: PartitionState, worker: str, next_offset: int, now: float) -> list[str]:
        """Take in a worker's position on the partition; the items parked on it that it passed."""
        before = state.heard.get(worker)
        heard = state.hear(worker, next_offset, now)
        if before is None or heard.next_offset > before.next_offset:
            self._moved[worker] = now
        return list(state.unpark_passed(worker, heard.next_offset))

    def over(self, state: PartitionState, partition: int, item_id: str, pending: Pending, now: float) -> str | None:
        """Why the item's wait for its missing votes is over, or None while it goes on (then a
        look is queued for when the answer can change, and the item parked on a slow worker)."""
        missing = {w: self.heard(state, partition, w) for w in self._expected if w not in pending.votes}
        status = wait_status(pending.first_seen, pending.offset, missing, now, self.rule)
        if isinstance(status, Waiting):
            state.park(status.worker, item_id)
        if isinstance(status, Waiting | NotYet):
            self.check_at(status.until, partition, item_id, pending)
            return None
        return status.cause

    def heard(self, state: PartitionState, partition: int, worker: str) -> Heard:
        """What is known of `worker` on the partition: its reports there, the group's latest move
        on any of our partitions, and whether the group coordinator lists a live member for it."""
        heard = state.heard_of(worker)
        moved = self._moved.get(worker)
        member = self._members.live(worker, partition) if self._members is not None else None
        moved_at = max(heard.moved, moved or heard.moved)
        return replace(heard, moved_at=moved_at, member=member, read_to=state.votes_read_to)

    def due(self, states: Mapping[int, PartitionState], now: float) -> Iterator[tuple[PartitionState, int, str]]:
        """The items (with their item) whose look is due, to be looked at; votes whose item never
        came are dropped once the window has passed (nothing to label)."""
        while self._checks and self._checks[0][0] <= now:
            when, partition, item_id = heapq.heappop(self._checks)
            state = states.get(partition)
            pending = state.pending.get(item_id) if state else None
            if state is None or pending is None or (pending.check_at is not None and when < pending.check_at):
                continue  # decided, not ours, or superseded by a later look
            pending.check_at = None
            if pending.item is not None:
                yield state, partition, item_id
            elif now - pending.first_seen >= self._window_s:
                state.drop(item_id)
                _ORPHANS.inc()
            else:
                self.check_at(pending.first_seen + self._window_s, partition, item_id, pending)

    def silent(self, states: Mapping[int, PartitionState], now: float) -> Iterator[tuple[PartitionState, int, str]]:
        """Items parked on a worker that has since fallen silent on their partition: look again."""
        for partition, state in states.items():
            for worker in [w for w, queue in state.parked.items() if queue]:
                if self.rule.gone(self.heard(state, partition, worker), now):
                    for item_id in state.unpark_all(worker):
                        yield state, partition, item_id
