"""Straggler detection that knows slow from stuck: is the wait for an item's missing votes over?

Pure: no Kafka, no clock (`now` is passed in). The deadline exists for dead or stuck workers,
not for busy ones, so lateness alone never escalates an item.

What the aggregator knows of each worker group on each partition (`Heard`): every worker
transaction writes, on the votes partition of the same number and AFTER that batch's votes, the
worker's position on the items partition (`VoteBatch.next_offset`); an idle worker writes an
empty batch every `worker.progress_interval_ms` as a heartbeat. Same partition, same
transaction, votes first: once the aggregator has read a position, it has read every vote the
group cast below it. For an undecided item at offset `o` waiting for a missing worker `w`:

- PASSED: `w`'s position is beyond `o`. Its vote would precede that record; it is never coming.
- SILENT: nothing heard for longer than its silence limit, counted up to the last moment the
  aggregator had read the votes partition to its end (`Heard.read_to`: a report it has not read
  yet is no silence, so an aggregator behind on its input never takes workers for dead), and
  Kafka's group coordinator does not
  list a live member of the group owning the partition (`Heard.member`: stopped, crashed past its
  session timeout, never started; unknown counts as none). The limit is `deadline_ms`, or twice
  the longest recent gap between the group's reports there when that is longer (a worker on slow
  model batches reports rarely but is not dead: learned from the stream, not configured). A quiet
  worker whose member is alive (CPU-starved, on a long model call) is SLOW, until it is STUCK.
- STUCK: heard from, but the group has not moved its position (on any partition this aggregator
  owns: a worker drains one partition's backlog before the next) for `ceiling_ms` while the item
  waited (counted from the item's first sight or the last move, whichever is later): alive and
  making no progress.
- SLOW: otherwise: alive, moving, not there yet. Keep waiting, however long the backlog.

The wait is over (`Over`) when no missing worker is SLOW and either every one has PASSED the
item or the item has waited `deadline_ms`; or, if `max_wait_ms` is set, once the item has waited
that long whatever the workers do (a latency bound that trades judge load for it). Otherwise it
is `Waiting` on one SLOW worker (the answer can only change when that worker votes, passes the
item, falls silent or gets stuck, at the latest at `until`) or, before the deadline, `NotYet`.

Why the ceiling counts stalls and not the item's age: a healthy worker tier behind a backlog
longer than any fixed ceiling would otherwise send the judge every item exactly when the system
is overloaded; a worker that moves is never stuck.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Heard",
    "Missing",
    "NotYet",
    "Over",
    "StragglerRule",
    "WaitStatus",
    "Waiting",
    "classify",
    "heard_again",
    "wait_status",
]


# How fast a long interval between a worker's reports is forgotten, per report: one slow batch
# keeps the silence limit raised for the next few dozen reports, not forever.
GAP_DECAY = 0.95


@dataclass(frozen=True, slots=True)
class Heard:
    """The latest position record of one worker group on one partition, as the aggregator read it.

    `next_offset`: every item of the partition below it has been voted on (or dead-lettered) by
    the group. `at`: when the aggregator read the record (its own clock: a lagging aggregator then
    errs towards "alive"). `gap`: the longest recent interval between the group's records there
    (a decaying maximum, 0 after one record). `moved_at`: when the group's position last
    increased (`at` if never seen to; the caller may supply the group's latest move on any
    partition). `member`: whether the group coordinator lists a live member owning the
    partition (None: unknown). `read_to`: when the aggregator last had read the votes partition
    to its end (None: not yet; its silence is then unknown).
    """

    next_offset: int
    at: float
    gap: float = 0.0
    moved_at: float | None = None
    member: bool | None = None
    read_to: float | None = None

    @property
    def moved(self) -> float:
        return self.at if self.moved_at is None else self.moved_at


def heard_again(previous: Heard | None, next_offset: int, now: float) -> Heard:
    """The record after `previous`: positions never move back (a replayed older record, or a
    rebalanced group restarting from its commit, says nothing new about items already passed)."""
    if previous is None:
        return Heard(next_offset, now, moved_at=now)
    moved_at = now if next_offset > previous.next_offset else previous.moved
    gap = max(now - previous.at, GAP_DECAY * previous.gap, 0.0)
    return Heard(max(previous.next_offset, next_offset), now, gap, moved_at)


@dataclass(frozen=True, slots=True)
class StragglerRule:
    """`deadline_ms`: how long an item waits for a silent worker. `ceiling_ms`: how long a live
    worker's position may stand still while the item waits before it counts as stuck.
    `max_wait_ms`: if set, no item waits longer for votes, whatever the workers do."""

    deadline_ms: float
    ceiling_ms: float
    max_wait_ms: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.deadline_ms <= self.ceiling_ms:
            raise ValueError(f"need 0 <= deadline_ms <= ceiling_ms, got {self.deadline_ms!r}, {self.ceiling_ms!r}")
        if self.max_wait_ms is not None and self.max_wait_ms < self.deadline_ms:
            raise ValueError(f"max_wait_ms {self.max_wait_ms!r} is below deadline_ms {self.deadline_ms!r}")

    def silence_s(self, heard: Heard) -> float:
        """Seconds without a record after which the group counts as gone from the partition."""
        return max(self.deadline_ms / 1000.0, 2.0 * heard.gap)

    def gone(self, heard: Heard, now: float) -> bool:
        """No report for the silence limit (as far as read) and no live member listed: the group
        is not there."""
        quiet_s = min(now, heard.read_to) - heard.at if heard.read_to is not None else 0.0
        return quiet_s >= self.silence_s(heard) and heard.member is not True

    def stuck_at(self, heard: Heard, first_seen: float) -> float:
        """When a live worker that does not move counts as stuck, for an item first seen then."""
        return max(heard.moved, first_seen) + self.ceiling_ms / 1000.0


class Missing(StrEnum):
    PASSED = "passed"
    SLOW = "slow"
    SILENT = "silent"
    STUCK = "stuck"


def classify(offset: int | None, heard: Heard, first_seen: float, now: float, rule: StragglerRule) -> Missing:
    """Why one worker's vote on the item at `offset` (first seen at `first_seen`) is missing.
    `offset` None: unknown, never PASSED."""
    if offset is not None and heard.next_offset > offset:
        return Missing.PASSED
    if rule.gone(heard, now):
        return Missing.SILENT
    if now >= rule.stuck_at(heard, first_seen):
        return Missing.STUCK
    return Missing.SLOW


@dataclass(frozen=True, slots=True)
class Over:
    """Stop waiting; `cause` says why: "passed" (every missing worker passed the item), "silent"
    (the deadline passed and no missing worker is alive there), "stuck" (the deadline passed and
    a missing worker is alive but has stood still for the ceiling) or "max_wait"."""

    cause: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """`worker` is alive and behind: ask again when it votes, passes the item or falls silent,
    or at `until` (when it counts as stuck if it has not moved by then, or `max_wait_ms`)."""

    worker: str
    until: float


@dataclass(frozen=True, slots=True)
class NotYet:
    """Some missing worker is silent but the item's deadline has not passed: ask again at `until`."""

    until: float


WaitStatus = Over | Waiting | NotYet


def wait_status(
    first_seen: float, offset: int | None, missing: Mapping[str, Heard], now: float, rule: StragglerRule
) -> WaitStatus:
    """Whether the wait for the `missing` workers' votes (worker -> what was heard of it on the
    item's partition) is over, for an item first seen at `first_seen` (see the module docstring)."""
    elapsed_s = now - first_seen
    limit = first_seen + rule.max_wait_ms / 1000.0 if rule.max_wait_ms is not None else float("inf")
    if now >= limit:
        return Over("max_wait")
    statuses = {worker: classify(offset, heard, first_seen, now, rule) for worker, heard in sorted(missing.items())}
    slow = [worker for worker, status in statuses.items() if status is Missing.SLOW]
    if slow:
        return Waiting(slow[0], min(limit, rule.stuck_at(missing[slow[0]], first_seen)))
    if all(status is Missing.PASSED for status in statuses.values()):
        return Over("passed")
    if elapsed_s >= rule.deadline_ms / 1000.0:
        return Over("stuck" if Missing.STUCK in statuses.values() else "silent")
    return NotYet(first_seen + rule.deadline_ms / 1000.0)
