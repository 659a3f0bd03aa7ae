"""Prequential simulation of the target policy: cold start, warm start, every item counted."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tribunal.bench.target import bench_target, summary_table, warm_from
from tribunal.consumers.policy.ballots import Ballot
from tribunal.consumers.policy.calibration import TargetConfig
from tribunal.consumers.policy.target import TargetPolicy
from tribunal.offline.policy_sim import RecordedItem, Recording
from tribunal.offline.target_sim import order_of, simulate_target

WORKERS = ("w1", "w2", "w3")
CONFIG = TargetConfig(max_disagreement=0.05, confidence=0.9)


def _recording(n: int, seed: int) -> Recording:
    """Unanimous items (70%): the judge keeps the label. Split items: it sides with the
    minority half the time. Gold equals the judge."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        easy = rng.random() < 0.7
        third = "a" if easy else "b"
        judge = "a" if easy or rng.random() < 0.5 else "b"
        ballots = (Ballot("w1", "a", 0.9), Ballot("w2", "a", 0.8), Ballot("w3", third, 0.7))
        items.append(RecordedItem(f"i{seed}-{i}", judge, ballots, (0.1, 0.1, 0.1), judge, 10.0))
    return Recording("t", ("a", "b"), WORKERS, tuple(items))


def test_cold_start_is_judge_heavy_then_learns() -> None:
    """Nothing is accepted before evidence certifies a cut-off; afterwards unanimous items are
    accepted, judge calls fall, and the realised disagreement is within the target."""
    recording = _recording(3000, 1)
    run = simulate_target(recording, CONFIG, order=1)
    assert run.first_accept is not None and run.first_accept > 100
    assert run.judge_calls < run.items and run.reduction > 1.5
    assert run.accepted > 0 and run.disagreement <= CONFIG.max_disagreement
    assert run.reduction_after_warmup > run.reduction
    assert run.items == 3000 and run.correct + (run.judge_correct - run.correct) == run.judge_correct


def test_simulation_decides_like_the_policy() -> None:
    """The simulation's acceptance is `TargetPolicy.decide` on the same ballots (shared rule)."""
    recording = _recording(2000, 2)
    warm = warm_from(recording, CONFIG, "synthetic")
    policy = TargetPolicy(warm.rule, workers=WORKERS)
    accepted = sum(type(policy.decide(r.ballots, WORKERS)).__name__ == "Accept" for r in recording.items)
    frozen = replace(warm, rule=replace(warm.rule, next_refit_at=10**9))  # no re-fit: one rule throughout
    run = simulate_target(recording, CONFIG, order=0, warm=frozen)
    assert run.accepted == accepted and run.rules == 0


def test_warm_start_accepts_from_the_first_item() -> None:
    """A rule calibrated on other items of the same kind accepts from the start."""
    run = simulate_target(_recording(2000, 3), CONFIG, order=2, warm=warm_from(_recording(2000, 4), CONFIG, "x"))
    assert run.first_accept is not None and run.first_accept < 10 and run.reduction > 2.0


def test_orders_are_seeded_shuffles() -> None:
    """Order 0 is the recorded order; others are reproducible permutations."""
    assert order_of(5, 0) == [0, 1, 2, 3, 4]
    assert order_of(50, 3) == order_of(50, 3) != order_of(50, 4)
    assert sorted(order_of(50, 3)) == list(range(50))


def test_bench_summaries_cover_targets_and_starts() -> None:
    """One cold and one warm row per target, with the figures the docs print."""
    summaries = bench_target(_recording(1500, 5), CONFIG, (0.05, 0.1), orders=2, warm_share=0.3)
    assert [(s.target, s.start) for s in summaries] == [(0.05, "cold"), (0.05, "warm 30%"), (0.1, "cold"),
                                                       (0.1, "warm 30%")]  # fmt: skip
    row = summaries[0].as_dict()
    assert row["orders"] == 2 and row["items"] == 1500
    assert 0.0 <= row["within_target"] <= 1.0
    assert row["judge_rate_mean"] == pytest.approx(1 / row["reduction_mean"], rel=0.3)
    assert "| 0.05 | cold | 2 |" in summary_table(summaries)
