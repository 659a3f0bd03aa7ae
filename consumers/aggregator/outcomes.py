"""What an aggregator decision publishes, in the transaction that decides it.

- Accept: the workers' label (a worker-decided `Verdict` to `labels`), and, for a random audit
  sample, a `JudgeRequest` without a ticket (its verdict is evidence, never a label).
- Escalate: a `JudgeRequest` to `judge` with a fresh ticket, which the verdict must carry back
  (`consumers.aggregator.admission`); or, when the judge budget (`JudgeBudget`) is spent, a fallback label.

The item is then decided (or awaits its verdict) in the partition's state. No Kafka here: the
outputs go out with the runtime's transaction.
"""

from __future__ import annotations

import secrets

from tribunal.consumers.aggregator.judge_budget import JudgeBudget
from tribunal.consumers.aggregator.policies import TaskPolicies
from tribunal.consumers.aggregator.state import PartitionState, Pending
from tribunal.consumers.policy.ballots import Accept, Decision, Escalate, Policy, audited
from tribunal.consumers.verdicts import fallback_verdict, judge_request, observe_latency, verdict_bytes
from tribunal.core.batches import Output
from tribunal.core.kafka_settings import TopicSettings
from tribunal.core.metrics import DECISIONS
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item
from tribunal.schemas.tasks import TaskRegistry

__all__ = ["DecisionOutputs"]

_ACCEPTED = DECISIONS.labels("accept", "")


class DecisionOutputs:
    """Turns a policy's `Decision` on one pending item into outputs and a state change."""

    def __init__(
        self,
        topics: TopicSettings,
        tasks: TaskRegistry,
        policies: TaskPolicies,
        judge_budget: JudgeBudget,
        audit_rate: float,
    ) -> None:
        """`audit_rate`: the share of accepted items audited where the policy names none."""
        self._topics = topics
        self._tasks = tasks
        self._policies = policies
        self._judge_budget = judge_budget
        self._audit_rate = audit_rate

    def act(
        self,
        state: PartitionState,
        partition: int,
        item_id: str,
        pending: Pending,
        decision: Decision,
        policy: Policy,
        now: float,
    ) -> list[Output]:
        item = pending.item
        assert item is not None
        rate = self._policies.audit_rate(policy)
        if isinstance(decision, Accept):
            _ACCEPTED.inc()
            value = verdict_bytes(item, pending.votes, decision, policy, now, rate)
            outputs = [Output(self._topics.labels_topic, value, key(item_id))]
            observe_latency(item.task, DecidedBy.WORKERS.value, item.produced_at, item.source, now)
            if audited(item_id, self._audit_rate if rate is None else rate) and self._judge_budget.admit(now):
                outputs.append(self._escalate(item, pending, EscalationReason.AUDIT, policy, rate, None)[0])
        elif isinstance(decision, Escalate):
            output, ticket = self._escalate(item, pending, decision.reason, policy, rate, partition, now)
            if ticket is not None:
                state.escalate(item_id, ticket, now)
                return [output]
            outputs = [output]
        else:
            return []
        state.decide(item_id, now)
        return outputs

    def _escalate(
        self,
        item: Item,
        pending: Pending,
        reason: EscalationReason,
        policy: Policy,
        rate: float | None,
        partition: int | None,
        now: float | None = None,
    ) -> tuple[Output, str | None]:
        """A JudgeRequest and the ticket its verdict must carry (None for audits, whose verdicts
        never label); or, when `now` is given and the judge budget is spent, a fallback label."""
        admitted = now is None or self._judge_budget.admit(now)
        ticket = secrets.token_hex(8) if admitted and partition is not None else None
        request = judge_request(item, pending.votes, reason, policy, rate, partition if ticket else None, ticket)
        if not admitted:
            DECISIONS.labels("fallback_budget", reason.value).inc()
            verdict = fallback_verdict(request, self._tasks)
            if now is not None:
                observe_latency(item.task, verdict.decided_by.value, item.produced_at, item.source, now)
            return Output(self._topics.labels_topic, encode(verdict), key(item.id)), None
        DECISIONS.labels("escalate", reason.value).inc()
        return Output(self._topics.judge_topic, encode(request), key(item.id)), ticket
