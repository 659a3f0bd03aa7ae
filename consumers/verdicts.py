"""Building final labels from a `JudgeRequest`: the judge's own, or the workers' fallback."""

from __future__ import annotations

from tribunal.consumers.decision import ballots, plurality
from tribunal.schemas.messages import DecidedBy, JudgeRequest, Verdict
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["fallback_verdict", "verdict_for"]


def verdict_for(
    request: JudgeRequest, label: str, confidence: float, by: DecidedBy, latency_ms: float | None
) -> Verdict:
    """The final label of the request's item, with the workers' votes attached and the request's
    ticket, which the aggregator checks before publishing it."""
    item = request.item
    return Verdict(
        item_id=item.id,
        task=item.task,
        label=label,
        decided_by=by,
        confidence=confidence,
        votes=request.votes,
        reason=request.reason,
        policy=request.policy,
        policy_version=request.policy_version,
        audit_rate=request.audit_rate,
        gold=item.gold,
        item_produced_at=item.produced_at,
        judge_latency_ms=latency_ms,
        ticket=request.ticket,
    )


def fallback_verdict(request: JudgeRequest, tasks: TaskRegistry) -> Verdict:
    """The workers' plurality as an unverified final label (`decided_by=fallback`).

    With no usable vote at all: the task's first label with confidence 0. An item must still get
    its one label, and `fallback` with confidence 0 tells readers it carries no information.
    """
    best = plurality(ballots(request.votes))
    label, confidence = best if best is not None else (tasks.get(request.item.task).labels[0], 0.0)
    return verdict_for(request, label, confidence, DecidedBy.FALLBACK, None)
