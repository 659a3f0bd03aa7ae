"""Which votes and verdicts may decide an item: pure checks, the aggregator applies them.

A vote counts only if its `VoteBatch` comes from an expected worker and the vote names its item's
task (its label was already checked against that task when the batch was decoded). A verdict
becomes a label only if it answers an escalation still awaiting one, with the ticket that
escalation issued: the judge cannot tell a forged request from a real one, the aggregator that
escalated can. Each refusal is (kind, why): the kind names the dead letter, the reason goes into it.
"""

from __future__ import annotations

from tribunal.schemas.messages import Verdict

__all__ = ["Refusal", "task_mismatch", "unexpected_worker", "verdict_refusal"]

Refusal = tuple[str, str]


def unexpected_worker(worker: str, expected: tuple[str, ...]) -> Refusal:
    """Why a `VoteBatch` from `worker`, not one of the `expected` workers, never counts."""
    return "unexpected_worker", f"worker {worker!r} is not one of {expected}"


def task_mismatch(vote_task: str, item_task: str) -> Refusal | None:
    """Why a vote for `vote_task` may not count for an item of `item_task`, or None if it may."""
    if vote_task == item_task:
        return None
    return "task_mismatch", f"vote for task {vote_task!r} on an item of task {item_task!r}"


def verdict_refusal(verdict: Verdict, awaited_ticket: str | None) -> Refusal | None:
    """Why `verdict` may not become its item's label, given the ticket of the escalation awaiting
    one (None: no escalation of that item awaits a verdict)."""
    if awaited_ticket is None:
        return "unsolicited_verdict", "no escalation of this item awaits a verdict"
    if verdict.ticket != awaited_ticket:
        return "unsolicited_verdict", "its ticket is not the one its escalation issued"
    return None
