"""Re-deciding history under another policy, as a pure function of the recorded log.

`redecide(log, policy_for, expected, now)` takes what a pipeline recorded (items, the vote log,
the original verdicts and any judge labels) and returns what the new policy would have
published, without running a worker or the judge:

- every item is decided with all of its recorded votes (`policy.ballots.final`): as if every vote had
  arrived; a `Wait` (some expected worker never voted) is the deadline case, so it escalates;
- an accepted item gets a `Verdict` decided_by=workers;
- an escalated item reuses the source's judge label when there is one (an original verdict
  decided_by=judge, or the judge's audit verdict), else it gets a `JudgeRequest` so a judge can
  settle it later. Both count as escalated.

Votes are counted like the aggregator counts them: the first vote of each expected worker per
item, votes of other workers ignored. A `WeightedVote` policy learns from every reused judge
label, in the order items are decided, as it would online.

`Redecider` is the same decision one item at a time (what `tribunal replay votes` streams
through, in bounded memory); `redecide` runs it over an in-memory `RecordedLog`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tribunal.consumers.policy.ballots import Accept, Policy, ballots, final
from tribunal.consumers.policy.voting import WeightedVote
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item, JudgeRequest, Verdict, Vote

__all__ = [
    "NO_LABEL",
    "RecordedLog",
    "RecordedVerdict",
    "Redecider",
    "ReplayOutcome",
    "group_votes",
    "redecide",
]

# The `by_class` key of items that had no original verdict (still in flight when recorded).
NO_LABEL = "(none)"


def group_votes(votes: Iterable[Vote], expected: Sequence[str]) -> dict[str, list[Vote]]:
    """Votes per item id, first vote of each expected worker only, sorted by worker name."""
    wanted = set(expected)
    grouped: dict[str, dict[str, Vote]] = {}
    for vote in votes:
        if vote.worker in wanted:
            grouped.setdefault(vote.item_id, {}).setdefault(vote.worker, vote)
    return {item_id: [by_worker[w] for w in sorted(by_worker)] for item_id, by_worker in grouped.items()}


class RecordedVerdict(Protocol):
    """What replay needs of a recorded verdict (a `Verdict`, or a compact summary of one)."""

    @property
    def label(self) -> str: ...

    @property
    def decided_by(self) -> DecidedBy: ...

    @property
    def confidence(self) -> float: ...

    @property
    def judge_latency_ms(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class RecordedLog:
    """What the source pipeline recorded. `items` in log order; `verdicts` the first verdict per
    item id on `labels`; `judge_labels` extra judge verdicts per item id (the audits)."""

    items: Sequence[Item]
    votes: Sequence[Vote]
    verdicts: Mapping[str, RecordedVerdict] = field(default_factory=dict)
    judge_labels: Mapping[str, RecordedVerdict] = field(default_factory=dict)

    def judge_verdict(self, item_id: str) -> RecordedVerdict | None:
        """The judge's label for this item, if the source has one."""
        return judge_label(self.verdicts.get(item_id), self.judge_labels.get(item_id))


def judge_label(original: RecordedVerdict | None, audit: RecordedVerdict | None) -> RecordedVerdict | None:
    """The source's judge label of an item: its verdict if the judge decided it, else its audit."""
    if original is not None and original.decided_by == DecidedBy.JUDGE:
        return original
    return audit


@dataclass(slots=True)
class ReplayOutcome:
    """What the new policy publishes, and the diff against the source."""

    policy: str
    verdicts: list[Verdict] = field(default_factory=list)
    requests: list[JudgeRequest] = field(default_factory=list)
    items: int = 0
    changed: int = 0
    escalated: int = 0
    judge_reused: int = 0
    source_escalated: int = 0
    by_class: dict[str, Counter[str]] = field(default_factory=dict)
    gold_hits: Counter[str] = field(default_factory=Counter)  # "original" / "new" / "scored"
    emitted_requests: int = 0  # judge requests handed to an `emit` callback instead of kept

    def report(self) -> dict[str, Any]:
        """The diff report (`tribunal replay votes --json`): counts and rates over `items`."""
        n = self.items
        report: dict[str, Any] = {
            "policy": self.policy,
            "items": n,
            "changed": self.changed,
            "escalated": self.escalated,
            "judge_reused": self.judge_reused,
            "judge_requests": len(self.requests) + self.emitted_requests,
            "source_judge_rate": self.source_escalated / n if n else 0.0,
            "new_judge_rate": self.escalated / n if n else 0.0,
            "by_class": {k: {"items": c["items"], "changed": c["changed"]} for k, c in sorted(self.by_class.items())},
        }
        scored = self.gold_hits["scored"]
        if scored:
            report["gold_accuracy"] = {
                "items": scored,
                "original": self.gold_hits["original"] / scored,
                "new": self.gold_hits["new"] / scored,
            }
        return report


class Redecider:
    """Decides recorded items one at a time under `policy_for(task)` (see the module docstring).

    `policy_for` is called once per item (return the same object for a task, so a learning
    policy keeps its state); `now` stamps `decided_at`/`escalated_at`. `emit` receives every new
    verdict and judge request; without it they are kept in `outcome.verdicts`/`requests`.
    """

    def __init__(
        self,
        policy_for: Callable[[str], Policy],
        expected: Sequence[str],
        now: float,
        emit: Callable[[Verdict | JudgeRequest], None] | None = None,
    ) -> None:
        self._policy_for = policy_for
        self._expected = expected
        self._now = now
        self._emit = emit
        self.outcome: ReplayOutcome | None = None

    def decide(
        self, item: Item, votes: list[Vote], original: RecordedVerdict | None, judge: RecordedVerdict | None
    ) -> None:
        """Decide `item` with its `votes` (first per expected worker, by worker), given the source's
        verdict for it and its judge label, if any."""
        policy = self._policy_for(item.task)
        outcome = self.outcome = self.outcome or ReplayOutcome(policy=policy.name)
        new = _decide_item(outcome, item, votes, policy, self._expected, self._now, judge)
        if isinstance(new, Verdict):
            if self._emit is None:
                outcome.verdicts.append(new)
            _count(outcome, item, original, new)
        else:
            if self._emit is None:
                outcome.requests.append(new)
            _count(outcome, item, original, None)
        if self._emit is not None:
            self._emit(new)
            outcome.emitted_requests += isinstance(new, JudgeRequest)

    def report(self) -> dict[str, Any]:
        return (self.outcome or ReplayOutcome(policy="")).report()


def redecide(
    log: RecordedLog, policy_for: Callable[[str], Policy], expected: Sequence[str], now: float
) -> ReplayOutcome:
    """Decide every item of `log`, in log order, with all of its recorded votes. An item id seen
    twice in `items` is decided once (the first copy counts, as in the aggregator)."""
    votes = group_votes(log.votes, expected)
    redecider = Redecider(policy_for, expected, now)
    seen: set[str] = set()
    for item in log.items:
        if item.id in seen:
            continue
        seen.add(item.id)
        redecider.decide(item, votes.get(item.id, []), log.verdicts.get(item.id), log.judge_verdict(item.id))
    return redecider.outcome or ReplayOutcome(policy="")


def _decide_item(
    outcome: ReplayOutcome,
    item: Item,
    votes: list[Vote],
    policy: Policy,
    expected: Sequence[str],
    now: float,
    judge: RecordedVerdict | None,
) -> Verdict | JudgeRequest:
    cast = ballots(votes)
    decision = final(policy, cast, expected)
    if isinstance(decision, Accept):
        return _verdict(item, votes, policy, now, decision.label, decision.confidence, DecidedBy.WORKERS, None)
    outcome.escalated += 1
    new = _judged(item, votes, policy, now, decision.reason, judge)
    if new is None:
        return _request(item, votes, policy, now, decision.reason)
    outcome.judge_reused += 1
    if isinstance(policy, WeightedVote):
        policy.reliability.update(cast, new.label)  # learns as the judge tier does online
    return new


def _count(outcome: ReplayOutcome, item: Item, original: RecordedVerdict | None, new: Verdict | None) -> None:
    outcome.items += 1
    changed = original is not None and new is not None and new.label != original.label
    outcome.changed += changed
    if original is not None and original.decided_by != DecidedBy.WORKERS:
        outcome.source_escalated += 1
    row = outcome.by_class.setdefault(original.label if original else NO_LABEL, Counter())
    row["items"] += 1
    row["changed"] += changed
    # Accuracy is compared on items both sides labelled, so pending judge requests do not count.
    if item.gold is not None and original is not None and new is not None:
        outcome.gold_hits["scored"] += 1
        outcome.gold_hits["original"] += original.label == item.gold
        outcome.gold_hits["new"] += new.label == item.gold


def _judged(
    item: Item,
    votes: list[Vote],
    policy: Policy,
    now: float,
    reason: EscalationReason,
    judge: RecordedVerdict | None,
) -> Verdict | None:
    """The new verdict of an escalated item from the source's judge label, or None if it has none."""
    if judge is None:
        return None
    verdict = _verdict(item, votes, policy, now, judge.label, judge.confidence, DecidedBy.JUDGE, reason)
    return verdict.model_copy(update={"judge_latency_ms": judge.judge_latency_ms})


def _verdict(
    item: Item,
    votes: list[Vote],
    policy: Policy,
    now: float,
    label: str,
    confidence: float,
    decided_by: DecidedBy,
    reason: EscalationReason | None,
) -> Verdict:
    return Verdict(
        item_id=item.id,
        task=item.task,
        label=label,
        decided_by=decided_by,
        confidence=confidence,
        votes=tuple(votes),
        reason=reason,
        policy=policy.name,
        policy_version=policy.version,
        gold=item.gold,
        item_produced_at=item.produced_at,
        decided_at=now,
        source=item.source,
    )


def _request(item: Item, votes: list[Vote], policy: Policy, now: float, reason: EscalationReason) -> JudgeRequest:
    return JudgeRequest(
        item=item,
        votes=tuple(votes),
        reason=reason,
        policy=policy.name,
        policy_version=policy.version,
        escalated_at=now,
    )
