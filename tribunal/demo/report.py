"""The demo's figures, computed from what the pipeline wrote: pure functions, no I/O, no clock.

Input is a `Measurement`: the cascade's verdicts and every worker vote for the timed items, the
judge-only pass's verdicts for the same items, and when each timed pass began. `build_report`
turns it into the one JSON-ready dict that the terminal view, `--report`, `--html` and
`tribunal bench cascade` all show. Accuracy figures reuse `tribunal.offline.evaluate` and appear only
when every decided item carries a gold label.

Definitions (the contract the tests pin down):
- wall time of a pass: per round, the last verdict's `decided_at` minus the moment the round's first
  item was sent, summed over the pass's rounds;
- compute-seconds: the sum of model latencies (votes' `latency_ms` + verdicts' `judge_latency_ms`);
- end-to-end latency: `decided_at - item_produced_at` per item, so in a burst it includes queueing;
- judge rate: share of items escalated (decided by the judge or by its fallback);
- judge overrule rate: share of judge-decided items whose label differs from the workers'
  plurality among the votes the judge was shown (items with no usable vote are not counted);
- expected speedup (the paper's formula): 1 / (w/j + (1 - a)) with w the slowest worker's mean
  latency per item, j the judge's mean latency per item in the judge-only pass, a the share of
  items decided by the workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tribunal.consumers.policy.ballots import ballots, plurality
from tribunal.offline.evaluate import accuracy, agreement, agreement_matrix, macro_f1, percentile
from tribunal.schemas.messages import DecidedBy, Verdict, Vote

__all__ = [
    "FINAL",
    "Measurement",
    "Round",
    "build_report",
    "compute_seconds",
    "decided_by_shares",
    "expected_speedup",
    "judge_overrule_rate",
    "latency_summary",
    "mean_latency_ms",
    "round_walls",
    "wall_seconds",
    "worker_answers",
]

FINAL = "final"
JUDGE_ONLY = "judge_only"


@dataclass(frozen=True, slots=True)
class Round:
    """Part of a timed pass: when sending its items began, and which items it sent."""

    started_at: float
    item_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class Measurement:
    """Everything one demo run observed. `item_ids` is the timed items in the order sent;
    `workers` maps each worker name to its classifier spec."""

    task: str
    source: str
    item_ids: Sequence[str]
    workers: Mapping[str, str]
    judge: str
    verdicts: Sequence[Verdict]
    votes: Sequence[Vote]
    judge_only: Sequence[Verdict]
    cascade_rounds: Sequence[Round]
    judge_only_rounds: Sequence[Round]
    machine: Mapping[str, float] = field(default_factory=dict)
    # The judge's audit verdicts (judge calls that publish no label) and the decision policy:
    # its name, and for the target policy the target and the rule in force at the end.
    audits: Sequence[Verdict] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)


def latency_summary(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """p50/p95/p99/mean of end-to-end latency in ms (0.0 each when there are no verdicts)."""
    values = [(v.decided_at - v.item_produced_at) * 1000.0 for v in verdicts]
    summary = {f"p{q}": percentile(values, q) for q in (50, 95, 99)}
    summary["mean"] = sum(values) / len(values) if values else 0.0
    return summary


def decided_by_shares(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Share of verdicts per `decided_by` value; every value present, summing to 1 (or all 0)."""
    counts = Counter(v.decided_by for v in verdicts)
    total = len(verdicts)
    return {by.value: counts[by] / total if total else 0.0 for by in DecidedBy}


def round_walls(rounds: Sequence[Round], verdicts: Sequence[Verdict]) -> list[float]:
    """Per round: from its start to the last `decided_at` among its items' verdicts (0.0 if none).
    An item may have several (its label and an audit): the last one counts."""
    decided: dict[str, float] = {}
    for v in verdicts:
        decided[v.item_id] = max(v.decided_at, decided.get(v.item_id, v.decided_at))
    walls = []
    for r in rounds:
        ends = [decided[i] for i in r.item_ids if i in decided]
        walls.append(max(ends) - r.started_at if ends else 0.0)
    return walls


def wall_seconds(rounds: Sequence[Round], verdicts: Sequence[Verdict]) -> float:
    """A pass's wall time: the sum of its rounds' (see `round_walls`)."""
    return sum(round_walls(rounds, verdicts))


def compute_seconds(votes: Sequence[Vote], verdicts: Sequence[Verdict]) -> float:
    """Model time spent: every vote's latency plus every judge call's latency, in seconds."""
    worker_ms = sum(v.latency_ms for v in votes)
    judge_ms = sum(v.judge_latency_ms or 0.0 for v in verdicts)
    return (worker_ms + judge_ms) / 1000.0


def mean_latency_ms(latencies: Sequence[float]) -> float:
    return sum(latencies) / len(latencies) if latencies else 0.0


def expected_speedup(worker_ms: float, judge_ms: float, agreement_rate: float) -> float | None:
    """The paper's 1 / (worker/judge + (1 - agreement)); None when the judge latency is unknown."""
    if judge_ms <= 0.0:
        return None
    return 1.0 / (worker_ms / judge_ms + (1.0 - agreement_rate))


def judge_overrule_rate(verdicts: Sequence[Verdict]) -> float | None:
    """Share of judge-decided verdicts whose label differs from the plurality of the votes they
    carry; None when no judge-decided verdict has a usable vote."""
    compared = overruled = 0
    for verdict in verdicts:
        if verdict.decided_by != DecidedBy.JUDGE:
            continue
        best = plurality(ballots(verdict.votes))
        if best is None:
            continue
        compared += 1
        overruled += best[0] != verdict.label
    return overruled / compared if compared else None


def worker_answers(
    votes: Sequence[Vote], item_ids: Sequence[str], workers: Sequence[str]
) -> dict[str, list[str | None]]:
    """Each worker's label per item, in `item_ids` order; None where it abstained or never voted."""
    by_key = {(v.worker, v.item_id): v.label for v in votes}
    return {w: [by_key.get((w, item_id)) for item_id in item_ids] for w in workers}


def _per_worker(m: Measurement, ids: Sequence[str], answers: Mapping[str, Sequence[str | None]],
                final: Sequence[str], gold: Sequence[str] | None) -> dict[str, dict[str, Any]]:  # fmt: skip
    result: dict[str, dict[str, Any]] = {}
    wanted = set(ids)
    for name, spec in m.workers.items():
        mine = [v for v in m.votes if v.worker == name and v.item_id in wanted]
        row: dict[str, Any] = {
            "spec": spec,
            "votes": len(mine),
            "abstained": sum(v.label is None for v in mine),
            "mean_latency_ms": mean_latency_ms([v.latency_ms for v in mine]),
            "agreement_with_final": agreement(answers[name], final),
        }
        if gold is not None:
            row["accuracy"] = accuracy(gold, answers[name])
            row["macro_f1"] = macro_f1(gold, answers[name])
        result[name] = row
    return result


def _gold(verdicts: Sequence[Verdict]) -> list[str] | None:
    """Gold labels in verdict order, or None unless every verdict has one."""
    golds = [v.gold for v in verdicts]
    return [g for g in golds if g is not None] if golds and all(g is not None for g in golds) else None


def _ordered(verdicts: Sequence[Verdict], item_ids: Sequence[str]) -> list[Verdict]:
    """One verdict per timed item that has one, in `item_ids` order (the first if repeated)."""
    by_id: dict[str, Verdict] = {}
    for verdict in verdicts:
        by_id.setdefault(verdict.item_id, verdict)
    return [by_id[i] for i in item_ids if i in by_id]


def _series(m: Measurement, cascade: Sequence[Verdict]) -> dict[str, Any]:
    """Raw series behind the charts: per verdict (seconds of cascade time, decided_by), rounds laid
    end to end, and each verdict's end-to-end latency."""
    walls = round_walls(m.cascade_rounds, cascade)
    offsets = {}  # item id -> (round start, time the earlier rounds took)
    for n, r in enumerate(m.cascade_rounds):
        offsets.update(dict.fromkeys(r.item_ids, (r.started_at, sum(walls[:n]))))
    timed = [(v.decided_at - offsets[v.item_id][0] + offsets[v.item_id][1], v) for v in cascade if v.item_id in offsets]
    return {
        "decisions": [[round(t, 4), v.decided_by.value] for t, v in sorted(timed, key=lambda tv: tv[0])],
        "latencies_ms": [round((v.decided_at - v.item_produced_at) * 1000.0, 2) for v in cascade],
        "rounds": len(m.cascade_rounds),
    }


def _quality(cascade: Sequence[Verdict], judge_only: Sequence[Verdict]) -> dict[str, Any]:
    """Accuracy and macro-F1 of the cascade and of the judge alone, when gold labels exist."""
    gold = _gold(cascade)
    if gold is None:
        return {}
    quality: dict[str, Any] = {
        "accuracy_cascade": accuracy(gold, [v.label for v in cascade]),
        "macro_f1_cascade": macro_f1(gold, [v.label for v in cascade]),
    }
    judge_gold = _gold(judge_only)
    if judge_gold is not None:
        quality["accuracy_judge_only"] = accuracy(judge_gold, [v.label for v in judge_only])
        quality["macro_f1_judge_only"] = macro_f1(judge_gold, [v.label for v in judge_only])
    return quality


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _speed(m: Measurement, cascade: Sequence[Verdict], judge_only: Sequence[Verdict],
           shares: Mapping[str, float]) -> dict[str, Any]:  # fmt: skip
    """Wall and compute time of both passes, measured and expected speedup."""
    ids = {v.item_id for v in cascade}
    votes = [v for v in m.votes if v.item_id in ids]
    audits = [v for v in m.audits if v.item_id in ids]
    wall_cascade = wall_seconds(m.cascade_rounds, [*cascade, *audits])
    wall_judge = wall_seconds(m.judge_only_rounds, judge_only)
    worker_ms = max((mean_latency_ms([v.latency_ms for v in votes if v.worker == w]) for w in m.workers), default=0.0)
    judge_ms = mean_latency_ms([v.judge_latency_ms for v in judge_only if v.judge_latency_ms is not None])
    expected = expected_speedup(worker_ms, judge_ms, shares[DecidedBy.WORKERS.value])
    return {
        "wall_s_cascade": wall_cascade,
        "wall_s_judge_only": wall_judge,
        "compute_s_cascade": compute_seconds(votes, [*cascade, *audits]),
        "compute_s_judge_only": compute_seconds((), judge_only),
        "compute_s_by_tier": {
            **{w: sum(v.latency_ms for v in votes if v.worker == w) / 1000.0 for w in m.workers},
            "judge": compute_seconds((), [*cascade, *audits]),
            JUDGE_ONLY: compute_seconds((), judge_only),
        },
        "speedup": _ratio(wall_judge, wall_cascade) if judge_only else None,
        "compute_speedup": _ratio(compute_seconds((), judge_only), compute_seconds(votes, [*cascade, *audits])),
        "expected_speedup": expected,
        "expected_speedup_inputs": {"worker_ms": worker_ms, "judge_ms": judge_ms, "agreement_rate": shares["workers"]},
        "throughput_items_per_s": len(cascade) / wall_cascade if wall_cascade > 0 else 0.0,
        "throughput_items_per_s_judge_only": len(judge_only) / wall_judge if wall_judge > 0 else 0.0,
    }


def _judge_calls(m: Measurement, cascade: Sequence[Verdict]) -> dict[str, Any]:
    """Judge calls of the cascade (escalations plus audits) and the policy that decided, with the
    rule versions its verdicts record."""
    ids = {v.item_id for v in cascade}
    audits = sum(1 for v in m.audits if v.item_id in ids)
    escalated = sum(1 for v in cascade if v.decided_by != DecidedBy.WORKERS)
    calls = escalated + audits
    versions = Counter(str(v.policy_version) for v in cascade)
    policy = {**m.policy, "versions": dict(sorted(versions.items()))}
    accepted = [v for v in cascade if v.decided_by == DecidedBy.WORKERS]
    alone = {v.item_id: v.label for v in m.judge_only}
    compared = [v for v in accepted if v.item_id in alone]
    changed = sum(alone[v.item_id] != v.label for v in compared)
    reasons = Counter(str(v.reason.value) for v in cascade if v.decided_by != DecidedBy.WORKERS and v.reason)
    return {
        "audits": audits,
        "escalations_by_reason": dict(sorted(reasons.items())),
        "judge_calls": calls,
        "judge_call_reduction": len(cascade) / calls if calls else None,
        "judge_calls_over_time": _calls_over_time(m, cascade),
        # Sent order: how many items streamed before the workers' label was first accepted.
        "first_accept": next((n for n, v in enumerate(cascade) if v.decided_by == DecidedBy.WORKERS), None),
        # The quality bar, checked against the judge-only pass: accepted labels it would change.
        "disagreement_accepted": changed / len(compared) if compared else None,
        "policy": policy,
    }


def _calls_over_time(m: Measurement, cascade: Sequence[Verdict], parts: int = 10) -> list[float]:
    """Judge calls per item (escalations plus audits) in each tenth of the stream, in sent order:
    a learning policy's judge rate falls as evidence accumulates."""
    audited = {v.item_id for v in m.audits}
    calls = [int(v.decided_by != DecidedBy.WORKERS) + int(v.item_id in audited) for v in cascade]
    size = max(1, -(-len(calls) // parts))
    return [sum(chunk) / len(chunk) for chunk in (calls[i : i + size] for i in range(0, len(calls), size))]


def build_report(m: Measurement) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (see the module docstring for definitions)."""
    cascade = _ordered(m.verdicts, m.item_ids)
    ids = [v.item_id for v in cascade]
    judge_only = _ordered(m.judge_only, ids)
    final = [v.label for v in cascade]
    gold = _gold(cascade)
    answers = worker_answers(m.votes, ids, list(m.workers))
    matrix_inputs: dict[str, Sequence[str | None]] = {**answers, FINAL: final}
    if len(judge_only) == len(cascade):
        matrix_inputs[JUDGE_ONLY] = [v.label for v in judge_only]
    if gold is not None:
        matrix_inputs["gold"] = gold
    shares = decided_by_shares(cascade)
    return {
        "task": m.task,
        "source": m.source,
        "items": len(cascade),
        "items_sent": len(m.item_ids),
        "items_judge_only": len(judge_only),
        "workers": dict(m.workers),
        "judge": m.judge,
        "latency_ms": latency_summary(cascade),
        "decided_by": shares,
        "judge_rate": shares[DecidedBy.JUDGE.value] + shares[DecidedBy.FALLBACK.value],
        **_judge_calls(m, cascade),
        "worker_agreement": agreement_matrix(matrix_inputs),
        "judge_overrule_rate": judge_overrule_rate(cascade),
        "per_worker": _per_worker(m, ids, answers, final, gold),
        **_quality(cascade, judge_only),
        **_speed(m, cascade, judge_only, shares),
        "machine": dict(m.machine),
        "series": _series(m, cascade),
    }
