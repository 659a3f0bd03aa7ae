"""Prequential simulation of the target policy on recorded votes: the pure half of
`tribunal bench policies --orders K` for the target rows.

One run streams a `Recording` in a given order, exactly as the live pipeline would: each item is
decided by the rule in force (`TargetPolicy`); an escalated item costs one judge call and gets
the judge's recorded label; an accepted item keeps the workers' label and, when its audit draw is
below the rule's audit rate, costs one more judge call (the audit). Every judged item becomes
evidence (`consumers.policy.calibration`), and the rule keeper's `step` may publish the next rule
before the next item. Nothing is fitted on data the stream has not paid for, and every item
counts in the figures, warm-up included.

Draws are salted with the order number, so K orders also draw K different audit samples (in
production the draws are fixed by the item ids).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tribunal.consumers.policy.ballots import plurality
from tribunal.consumers.policy.calibration import (
    Evidence,
    Ledger,
    TargetConfig,
    WarmStart,
    evidence_role,
    first_refit_at,
    step,
)
from tribunal.consumers.policy.target import Rule, TargetPolicy, audit_draw, cold_rule
from tribunal.consumers.policy.trust import features, score_features, vote_states
from tribunal.offline.policy_sim import RecordedItem, Recording

__all__ = ["TargetRun", "evidence_rows", "judge_or_plurality", "order_of", "simulate_target"]


@dataclass(frozen=True, slots=True)
class TargetRun:
    """One order's figures. `disagreement` is among accepted items, vs the judge's label."""

    items: int
    judge_calls: int
    audits: int
    accepted: int
    disagreed: int
    correct: int
    judge_correct: int
    first_accept: int | None  # items streamed before the first accepted one (None: never)
    calls_after_first_accept: int
    rules: int
    drift_alarms: int
    final_cutoff: float | None
    final_audit_rate: float

    @classmethod
    def of(
        cls,
        items: int,
        tally: dict[str, int],
        first_accept: int | None,
        calls_at_first: int,
        rules: int,
        drift_alarms: int,
        rule: Rule,
    ) -> TargetRun:
        """The figures of a prequential run from its running tally (calls, audits, accepted,
        disagreed, correct, judge_correct), when it first accepted, and its last rule."""
        return cls(
            items=items,
            judge_calls=tally["calls"],
            audits=tally["audits"],
            accepted=tally["accepted"],
            disagreed=tally["disagreed"],
            correct=tally["correct"],
            judge_correct=tally["judge_correct"],
            first_accept=first_accept,
            calls_after_first_accept=tally["calls"] - calls_at_first if first_accept is not None else 0,
            rules=rules,
            drift_alarms=drift_alarms,
            final_cutoff=rule.cutoff,
            final_audit_rate=rule.audit_rate,
        )

    @property
    def reduction(self) -> float:
        """Judge-only calls / this run's calls (audits included)."""
        return self.items / self.judge_calls if self.judge_calls else float("inf")

    @property
    def reduction_after_warmup(self) -> float:
        rest = self.items - (self.items if self.first_accept is None else self.first_accept)
        return rest / self.calls_after_first_accept if self.calls_after_first_accept else float("inf")

    @property
    def accuracy_loss(self) -> float:
        """Judge-only accuracy minus the cascade's, vs gold, in accuracy points (0-1)."""
        return (self.judge_correct - self.correct) / self.items if self.items else 0.0

    @property
    def disagreement(self) -> float:
        return self.disagreed / self.accepted if self.accepted else 0.0


def order_of(n: int, order: int) -> list[int]:
    """Order 0 is the recorded order; order k > 0 a seeded shuffle."""
    index = list(range(n))
    if order:
        random.Random(order).shuffle(index)
    return index


def _salted(item: RecordedItem, order: int) -> str:
    return f"{order}:{item.item_id}" if order else item.item_id


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What the simulation needs of one item, computed once per recording (ballots never change)."""

    label: str | None  # the workers' plurality (None: every worker abstained)
    states: tuple[tuple[int, float], ...]
    x: tuple[float, ...]
    final_if_escalated: str | None
    judge_correct: bool


_PREPARED: dict[int, tuple[Recording, list[_Prepared]]] = {}


def _prepare(recording: Recording) -> list[_Prepared]:
    cached = _PREPARED.get(id(recording))
    if cached is not None and cached[0] is recording:
        return cached[1]
    out = []
    for item in recording.items:
        voted = vote_states(item.ballots, recording.workers)
        label, states = voted if voted is not None else (None, ())
        judged = judge_or_plurality(item)
        out.append(_Prepared(label, states, tuple(features(states)), judged, judged == item.gold))
    _PREPARED.clear()  # one recording at a time: memory stays bounded
    _PREPARED[id(recording)] = (recording, out)
    return out


def simulate_target(
    recording: Recording, config: TargetConfig, order: int = 0, warm: WarmStart | None = None
) -> TargetRun:
    """Stream `recording` in order `order` under the target policy, from `warm` or a cold start.

    Items are decided like `TargetPolicy.decide` decides a complete ballot set (the same
    `accepts`), from features computed once per recording."""
    workers = recording.workers
    rule = warm.rule if warm is not None else cold_rule(recording.task, workers, first_refit_at(config))
    ledger = warm.ledger(config.window) if warm is not None else Ledger(config.window)
    policy, weights = TargetPolicy(rule, workers=workers), rule.model().weights
    prepared = _prepare(recording)
    tally = {"calls": 0, "audits": 0, "accepted": 0, "disagreed": 0, "correct": 0, "judge_correct": 0}
    first_accept: int | None = None
    calls_at_first = rules = alarms = 0
    for position, index in enumerate(order_of(len(recording.items), order)):
        item, ready = recording.items[index], prepared[index]
        salted = _salted(item, order)
        accepted = ready.label is not None and policy.accepts(score_features(weights, ready.x))
        audited = accepted and audit_draw(salted) < rule.audit_rate
        final = ready.label if accepted else ready.final_if_escalated
        if accepted:
            tally["accepted"] += 1
            tally["disagreed"] += item.judge_label is not None and item.judge_label != final
            if first_accept is None:
                first_accept, calls_at_first = position, tally["calls"]
        tally["calls"] += (not accepted) + audited
        tally["audits"] += audited
        tally["correct"] += final == item.gold
        tally["judge_correct"] += ready.judge_correct
        if (audited or not accepted) and item.judge_label is not None and ready.label is not None:
            role = evidence_role(salted, rule.audit_rate, config.fit_share)
            if role is not None:
                disagreed = item.judge_label != ready.label
                ledger.add(Evidence(ready.states, disagreed, accepted, rule.audit_rate, role, rule.version, ready.x))
                new = step(rule, ledger, config)
                if new is not None:
                    alarms += new.reason == "drift"
                    rules += 1
                    rule, policy, weights = new, TargetPolicy(new, workers=workers), new.model().weights
    return TargetRun.of(len(recording.items), tally, first_accept, calls_at_first, rules, alarms, rule)


def judge_or_plurality(item: RecordedItem) -> str | None:
    """The label an item ends with when the judge decides: its recorded judge label, else the
    workers' plurality (a judge fallback)."""
    if item.judge_label is not None:
        return item.judge_label
    top = plurality(item.ballots)
    return top[0] if top else None


def _evidence(item: RecordedItem, salted: str, rule: Rule, accepted: bool, config: TargetConfig) -> Evidence | None:
    voted = vote_states(item.ballots, rule.workers)
    role = evidence_role(salted, rule.audit_rate, config.fit_share)
    if voted is None or role is None or item.judge_label is None:
        return None
    label, states = voted
    return Evidence(states, item.judge_label != label, accepted, rule.audit_rate, role, rule.version)


def evidence_rows(items: Sequence[RecordedItem], workers: Sequence[str], fit_share: float) -> list[Evidence]:
    """Every judged item of a fully labelled recording as evidence of a cold rule (q = 1, all
    escalated): the input of `tribunal calibrate`."""
    rule = cold_rule("", workers, 0)
    config = TargetConfig(fit_share=fit_share)
    rows = [_evidence(item, item.item_id, rule, False, config) for item in items]
    return [r for r in rows if r is not None]
