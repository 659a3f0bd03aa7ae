"""Prequential simulation of workers that learn from the judge: the pure half of `tribunal bench learn`.

A recorded stream (`Recording`: the task's workers' votes and the judge's label of every item)
is replayed in one order under the target policy, exactly as `target_sim.simulate_target` does,
with one more worker: a TF-IDF head (`heads.fit_head`, the code `tribunal train` uses, padded to
the task's labels) fitted on the judge labels *the stream has paid for so far* (escalations and
audits; never gold, never a label the policy did not buy). Items arrive in worker batches of
`batch`; at each batch boundary, once `every` new judge labels arrived since the last fit (the
first fit once `first` did), a new head version is fitted and swapped in, and the batch is
labelled by it (the schedule is `label_harvest.due`, the one `tribunal train --from-labels`
keeps). Before the first version the learned worker abstains.

`mode="add"` adds the head as an extra worker; `mode="replace"` puts its ballots in place of
worker `replace` once a version exists. The same order is also run without learning (the
baseline), so both columns of the report share the stream, the audit draws and the target.

Figures per run: `TargetRun` (judge calls, accuracy vs gold, disagreement, warm-up), judge
calls per block of `block` items, and per block the learned head's agreement with the recorded
judge label and its accuracy vs gold over all the block's items (diagnostics: nothing of these
is fed back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tribunal.consumers.classifiers.heads import Head, fit_head, head_from
from tribunal.consumers.label_harvest import due
from tribunal.consumers.policy.ballots import Ballot
from tribunal.consumers.policy.calibration import Evidence, Ledger, TargetConfig, evidence_role, first_refit_at, step
from tribunal.consumers.policy.target import Rule, TargetPolicy, audit_draw, cold_rule
from tribunal.consumers.policy.trust import features, score_features, vote_states
from tribunal.offline.policy_sim import RecordedItem, Recording
from tribunal.offline.target_sim import TargetRun, judge_or_plurality, order_of
from tribunal.schemas.tasks import Task

__all__ = ["LEARNED", "LearnConfig", "LearnRun", "simulate_learning"]

LEARNED = "learned"


@dataclass(frozen=True, slots=True)
class LearnConfig:
    every: int = 500  # judge labels between two fits
    first: int = 200  # judge labels before the first fit
    batch: int = 64  # worker batch: a new version is swapped in at the next boundary
    mode: str = "add"  # "add" an extra worker, or "replace" worker `replace`
    replace: str = ""


@dataclass(slots=True)
class LearnRun:
    run: TargetRun
    block_calls: list[int] = field(default_factory=list)
    block_items: list[int] = field(default_factory=list)
    block_agree: list[int] = field(default_factory=list)  # learned label == judge label
    block_correct: list[int] = field(default_factory=list)  # learned label == gold
    block_voted: list[int] = field(default_factory=list)  # items the learned head labelled
    versions: int = 0
    train_seconds: float = 0.0

    def judge_rates(self) -> list[float]:
        return [c / n for c, n in zip(self.block_calls, self.block_items, strict=True)]


class _Learner:
    """The learned worker: the judge labels bought so far, and the head fitted on them."""

    def __init__(self, task: Task, texts: Mapping[str, str], config: LearnConfig) -> None:
        self._task, self._texts, self._config = task, texts, config
        self.rows: list[tuple[str, str]] = []
        self.head: Head | None = None
        self.fitted_on: int | None = None
        self.versions = 0
        self.seconds = 0.0

    def bought(self, item_id: str, label: str) -> None:
        self.rows.append((self._texts[item_id], label))

    def boundary(self) -> None:
        if not due(len(self.rows), self.fitted_on, self._config.every, self._config.first):
            return
        texts, labels = [t for t, _ in self.rows], [lab for _, lab in self.rows]
        if len(set(labels)) < 2:
            return
        header, arrays = fit_head(self._task, "tfidf", texts, labels, pad=True, source={"data": "judge labels"})
        self.head, self.fitted_on = head_from(header, arrays), len(self.rows)
        self.versions += 1
        self.seconds += float(header["train_seconds"])

    def ballots(self, items: Sequence[RecordedItem], worker: str) -> list[Ballot]:
        if self.head is None:
            return [Ballot(worker, None, 0.0) for _ in items]
        rows = self.head.model.predict_proba([self._texts[i.item_id] for i in items])
        classes = self.head.classes
        out = []
        for row in rows:
            best = int(row.argmax())
            out.append(Ballot(worker, classes[best], min(1.0, max(0.0, float(row[best])))))
        return out


def _workers(recording: Recording, config: LearnConfig | None) -> tuple[str, ...]:
    if config is None or config.mode == "replace":
        return recording.workers
    return (*recording.workers, LEARNED)


def _ballots(item: RecordedItem, learned: Ballot | None, config: LearnConfig | None) -> tuple[Ballot, ...]:
    if learned is None or config is None:
        return item.ballots
    if config.mode == "add":
        return (*item.ballots, learned)
    if learned.label is None:
        return item.ballots
    swapped = Ballot(config.replace, learned.label, learned.confidence)
    return tuple(swapped if b.worker == config.replace else b for b in item.ballots)


class _Cascade:
    """The target policy's side of one run: the rule in force, its evidence, and the tallies."""

    def __init__(self, task: str, workers: tuple[str, ...], target: TargetConfig, order: int) -> None:
        self.workers, self.target, self.order = workers, target, order
        self.ledger = Ledger(target.window)
        self._use(cold_rule(task, workers, first_refit_at(target)))
        self.tally = dict.fromkeys(("calls", "audits", "accepted", "disagreed", "correct", "judge_correct"), 0)
        self.first_accept: int | None = None
        self.calls_at_first = self.rules = self.alarms = 0

    def _use(self, rule: Rule) -> None:
        self.rule, self.policy, self.weights = rule, TargetPolicy(rule, workers=self.workers), rule.model().weights

    def decide(self, position: int, item: RecordedItem, ballots: Sequence[Ballot]) -> int:
        """Decide one item as the live policy would; the judge calls it cost (0, 1 or 2)."""
        voted = vote_states(ballots, self.workers)
        label, states = voted if voted is not None else (None, ())
        x = tuple(features(states))
        salted = f"{self.order}:{item.item_id}" if self.order else item.item_id
        accepted = label is not None and self.policy.accepts(score_features(self.weights, x))
        audited = accepted and audit_draw(salted) < self.rule.audit_rate
        judged = judge_or_plurality(item)
        final = label if accepted else judged
        if accepted:
            self.tally["accepted"] += 1
            self.tally["disagreed"] += item.judge_label is not None and item.judge_label != final
            if self.first_accept is None:
                self.first_accept, self.calls_at_first = position, self.tally["calls"]
        calls = int(not accepted) + int(audited)
        self.tally["calls"] += calls
        self.tally["audits"] += audited
        self.tally["correct"] += final == item.gold
        self.tally["judge_correct"] += judged == item.gold
        if calls and item.judge_label is not None and label is not None:
            self._evidence(salted, states, x, item.judge_label != label, accepted)
        return calls

    def _evidence(self, salted: str, states: Any, x: tuple[float, ...], disagreed: bool, accepted: bool) -> None:
        rule = self.rule
        role = evidence_role(salted, rule.audit_rate, self.target.fit_share)
        if role is None:
            return
        self.ledger.add(Evidence(states, disagreed, accepted, rule.audit_rate, role, rule.version, x))
        new = step(rule, self.ledger, self.target)
        if new is not None:
            self.alarms += new.reason == "drift"
            self.rules += 1
            self._use(new)

    def result(self, items: int) -> TargetRun:
        return TargetRun.of(
            items, self.tally, self.first_accept, self.calls_at_first, self.rules, self.alarms, self.rule
        )


def _count(out: LearnRun, position: int, block: int, item: RecordedItem, calls: int, mine: Ballot | None) -> None:
    if position % block == 0:
        for column in (out.block_calls, out.block_items, out.block_agree, out.block_correct, out.block_voted):
            column.append(0)
    out.block_calls[-1] += calls
    out.block_items[-1] += 1
    if mine is not None and mine.label is not None:
        out.block_voted[-1] += 1
        out.block_agree[-1] += mine.label == item.judge_label
        out.block_correct[-1] += mine.label == item.gold


def simulate_learning(
    recording: Recording,
    texts: Mapping[str, str],
    task: Task,
    target: TargetConfig,
    learn: LearnConfig | None,
    order: int = 0,
    block: int = 1_000,
) -> LearnRun:
    """Stream `recording` in order `order` under the target policy from a cold start, with a
    learned worker (`learn`) or without (None); figures per `block` items. Module docstring."""
    workers = _workers(recording, learn)
    if learn is not None and learn.mode == "replace" and learn.replace not in workers:
        raise ValueError(f"cannot replace {learn.replace!r}: the recording's workers are {list(workers)}")
    cascade = _Cascade(recording.task, workers, target, order)
    learner = _Learner(task, texts, learn) if learn is not None else None
    voter = learn.replace if learn is not None and learn.mode == "replace" else LEARNED
    out = LearnRun(run=cascade.result(0))
    index = order_of(len(recording.items), order)
    size = max(learn.batch if learn is not None else len(index), 1)
    for start in range(0, len(index), size):
        batch = [recording.items[i] for i in index[start : start + size]]
        learned: list[Ballot | None] = [None] * len(batch)
        if learner is not None:  # a batch boundary: a due version is fitted and swapped in
            learner.boundary()
            learned = list(learner.ballots(batch, voter))
        for offset, (item, mine) in enumerate(zip(batch, learned, strict=True)):
            calls = cascade.decide(start + offset, item, _ballots(item, mine, learn))
            _count(out, start + offset, block, item, calls, mine)
            if calls and item.judge_label is not None and learner is not None:
                learner.bought(item.item_id, item.judge_label)
    out.run = cascade.result(len(index))
    if learner is not None:
        out.versions, out.train_seconds = learner.versions, learner.seconds
    return out
