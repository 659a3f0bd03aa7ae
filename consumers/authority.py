"""Which votes and verdicts may decide an item: pure checks, the aggregator applies them.

A vote counts only if it comes from an expected worker and names its item's task (its label was
already checked against that task when it was decoded). A verdict becomes a label only if it
answers an escalation still awaiting one, with the ticket that escalation issued: the judge
cannot tell a forged request from a real one, the aggregator that escalated can. Each refusal is
(kind, why): the kind names the dead letter, the reason goes into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tribunal.schemas.messages import Item, Verdict, Vote

__all__ = ["Refusal", "foreign_votes", "verdict_refusal", "vote_refusal"]

Refusal = tuple[str, str]


def vote_refusal(vote: Vote, expected: Iterable[str], item: Item | None) -> Refusal | None:
    """Why `vote` can never count for `item` (None: not yet seen), or None if it may."""
    workers = tuple(expected)
    if vote.worker not in workers:
        return "unexpected_worker", f"worker {vote.worker!r} is not one of {workers}"
    if item is not None and item.task != vote.task:
        return "task_mismatch", f"vote for task {vote.task!r} on an item of task {item.task!r}"
    return None


def foreign_votes(votes: Mapping[str, Vote], item: Item) -> list[str]:
    """The workers whose votes, held until `item` arrived, name another task."""
    return [worker for worker, vote in votes.items() if vote.task != item.task]


def verdict_refusal(verdict: Verdict, awaited_ticket: str | None) -> Refusal | None:
    """Why `verdict` may not become its item's label, given the ticket of the escalation awaiting
    one (None: no escalation of that item awaits a verdict)."""
    if awaited_ticket is None:
        return "unsolicited_verdict", "no escalation of this item awaits a verdict"
    if verdict.ticket != awaited_ticket:
        return "unsolicited_verdict", "its ticket is not the one its escalation issued"
    return None
