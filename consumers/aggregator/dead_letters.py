"""The aggregator's dead letters: votes and verdicts refused by `consumers.aggregator.admission`, one letter
per refused record (or per refused vote inside a `VoteBatch`), and none for a record re-read
after a restart whose letter the earlier incarnation wrote.

Which refusals are pure functions of one record (a `VoteBatch` from an unexpected worker, a
verdict without the awaited ticket) and which need the join (a vote for another task than its
item's) matters after a restart, when the aggregator re-reads its undecided work: a record read
before (below the offsets its decided-id log recorded, `PartitionState.replayed_*`) was lettered
then. A vote for another task is lettered when the second of its batch and its item is read, so
it is not lettered again when both were read before.
"""

from __future__ import annotations

from typing import Any

from tribunal.consumers.aggregator.admission import task_mismatch, unexpected_worker
from tribunal.consumers.aggregator.state import PartitionState, Pending
from tribunal.core.batches import Output
from tribunal.core.metrics import DECISIONS
from tribunal.core.records import DeadLetterSource, Record, dead_letter
from tribunal.core.settings import Settings
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import ROW_TASK, Item, VoteBatch, VoteRow

__all__ = ["DeadLetters"]


class DeadLetters:
    """Builds the aggregator's dead letters (`<topic>.dlq`, bounded by `max_message_bytes`)."""

    def __init__(self, settings: Settings, tier: str, expected: tuple[str, ...]) -> None:
        self._topics = settings.topics
        self._votes_topic = settings.topics.votes_topic
        self._limit = settings.max_message_bytes
        self._tier = tier
        self._expected = expected

    def unexpected(self, state: PartitionState, record: Record[VoteBatch]) -> list[Output]:
        """A batch from a worker not expected: one letter for the whole record, unless re-read."""
        if record.offset < state.replayed_votes:
            return []
        return [self.refuse(record, *unexpected_worker(record.value.worker, self._expected))]

    def foreign_row(
        self, state: PartitionState, record: Record[VoteBatch], row: VoteRow, held: Pending
    ) -> list[Output]:
        """A vote in `record` for another task than its item's (`held.item`, already read)."""
        assert held.item is not None
        if record.offset < state.replayed_votes and (held.offset or 0) < state.replayed_items:
            return []
        return [self._foreign(record.partition, record.offset, record.value, row, held.item)]

    def foreign_held(
        self, state: PartitionState, partition: int, pending: Pending, item: Item, offset: int
    ) -> list[Output]:
        """Votes held until their item (read at `offset`) came, for another task than the item's:
        taken out of `pending` (their worker's real vote may still count), one letter each."""
        letters = []
        refused = [
            (w, state.drop_vote(pending, w))
            for w, vote in list(pending.votes.items())
            if vote.row[ROW_TASK] != item.task
        ]
        for worker, (model, voted_at, row, at) in refused + state.settle_strays(pending):
            if not (at < state.replayed_votes and offset < state.replayed_items):
                batch = VoteBatch(worker=worker, model=model, next_offset=0, voted_at=voted_at)
                letters.append(self._foreign(partition, at, batch, row, item))
        return letters

    def _foreign(self, partition: int, offset: int, batch: VoteBatch, row: Any, item: Item) -> Output:
        """The letter of one vote refused for naming another task than its item's: the vote alone
        (its batch's other votes count), at the offset of the batch that carried it."""
        vote = batch.vote(row)
        kind, why = task_mismatch(vote.task, item.task) or ("task_mismatch", "")
        source = DeadLetterSource(self._votes_topic, partition, offset, key(vote.item_id), encode(vote))
        return self._dead_letter(source, kind, why)

    def refuse(self, record: Record[Any], kind: str, why: str) -> Output:
        """The letter of a whole record (its original bytes), keyed by its item id if it has one."""
        item_id = record.value.item_key
        record_key = key(item_id) if item_id is not None else record.key
        source = DeadLetterSource(record.topic, record.partition, record.offset, record_key, record.raw)
        return self._dead_letter(source, kind, why)

    def _dead_letter(self, source: DeadLetterSource, kind: str, why: str) -> Output:
        DECISIONS.labels(kind, "").inc()
        dlq = self._topics.dlq(source.topic)
        return dead_letter(dlq, self._tier, source, kind, why, max_message_bytes=self._limit)
