"""Building final labels: from a `JudgeRequest` (the judge's own, or the workers' fallback), and the
workers' own straight from the aggregator's pending votes (its hot path: no model per vote)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tribunal.consumers.policy.ballots import Accept, HeldVote, Policy, ballots, plurality
from tribunal.core.metrics import ITEM_LATENCY
from tribunal.schemas.messages import (
    SCHEMA_VERSION,
    DecidedBy,
    EscalationReason,
    Item,
    JudgeRequest,
    SourceRecord,
    Verdict,
    Vote,
)
from tribunal.schemas.tasks import TaskRegistry

__all__ = [
    "fallback_verdict",
    "judge_request",
    "observe_latency",
    "verdict_bytes",
    "verdict_for",
    "vote_dict",
    "vote_model",
]


def observe_latency(task: str, decided_by: str, produced_at: float, source: SourceRecord | None, now: float) -> None:
    """Count a label's end-to-end latency (`tribunal_item_latency_seconds`): from its source
    record's timestamp when it came through an intake, else from the item's `produced_at`."""
    started = source.timestamp_ms / 1000.0 if source is not None and source.timestamp_ms > 0 else produced_at
    ITEM_LATENCY.labels(task, decided_by).observe(max(0.0, now - started))


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
        source=item.source,
    )


def fallback_verdict(request: JudgeRequest, tasks: TaskRegistry) -> Verdict:
    """The workers' plurality as an unverified final label (`decided_by=fallback`).

    With no usable vote at all: the task's first label with confidence 0. An item must still get
    its one label, and `fallback` with confidence 0 tells readers it carries no information.
    """
    best = plurality(ballots(request.votes))
    label, confidence = best if best is not None else (tasks.get(request.item.task).labels[0], 0.0)
    return verdict_for(request, label, confidence, DecidedBy.FALLBACK, None)


def verdict_bytes(
    item: Item,
    votes: Mapping[str, HeldVote],
    decision: Accept,
    policy: Policy,
    now: float,
    audit_rate: float | None = None,
) -> bytes:
    """A worker-decided `Verdict`, encoded straight from the pending state: what `encode(Verdict(
    ...))` gives (a unit test holds them equal), without building a model per vote."""
    verdict: dict[str, Any] = {
        "schema_version": 2,
        "audit_rate": audit_rate,
        "item_id": item.id,
        "task": item.task,
        "label": decision.label,
        "decided_by": DecidedBy.WORKERS.value,
        "confidence": decision.confidence,
        "votes": [vote_dict(worker, votes[worker]) for worker in sorted(votes)],
        "reason": None,
        "policy": policy.name,
        "policy_version": policy.version,
        "gold": item.gold,
        "item_produced_at": item.produced_at,
        "decided_at": now,
        "judge_latency_ms": None,
        "ticket": None,
    }
    if item.source is not None:
        verdict["source"] = item.source.model_dump()
    return orjson.dumps(verdict)


def vote_dict(worker: str, vote: HeldVote) -> dict[str, Any]:
    model, voted_at, (item_id, task, label, confidence, latency_ms, reason), _ = vote
    return {
        "schema_version": SCHEMA_VERSION,
        "item_id": item_id,
        "worker": worker,
        "model": model,
        "task": task,
        "label": label,
        "confidence": confidence,
        "latency_ms": latency_ms,
        "reason": reason,
        "voted_at": voted_at,
    }


def vote_model(worker: str, vote: HeldVote) -> Vote:
    """A pending vote as a `Vote` (for judge requests: escalations are the minority)."""
    return Vote(**vote_dict(worker, vote))


def judge_request(
    item: Item,
    votes: Mapping[str, HeldVote],
    reason: EscalationReason,
    policy: Policy,
    audit_rate: float | None,
    partition: int | None,
    ticket: str | None,
) -> JudgeRequest:
    """What the aggregator asks the judge about an item: its votes (in worker order), why, under
    which policy, and for an escalation the partition and ticket its verdict must come back with."""
    return JudgeRequest(
        item=item,
        votes=tuple(vote_model(worker, votes[worker]) for worker in sorted(votes)),
        reason=reason,
        policy=policy.name,
        policy_version=policy.version,
        partition=partition,
        ticket=ticket,
        audit_rate=audit_rate,
    )
