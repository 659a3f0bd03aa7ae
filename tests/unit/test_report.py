"""The demo report's figures from hand-made tables of verdicts and votes (numbers worked out by hand)."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pytest

from tribunal.demo import svg
from tribunal.demo.report import (
    Measurement,
    Round,
    build_report,
    compute_seconds,
    decided_by_shares,
    expected_speedup,
    judge_overrule_rate,
    latency_summary,
    round_walls,
    wall_seconds,
    worker_answers,
)
from tribunal.demo.report_view import headline, render_html, sparkline
from tribunal.schemas.messages import DecidedBy, Verdict, Vote

P, N = "positive", "negative"
WORKERS = {"w1": "hash:1", "w2": "hash:2", "w3": "hash:3"}
# item -> (gold, (w1, w2, w3) votes, decided_by, final label, decided_at, judge-only label)
TABLE = {
    "a": (P, (P, P, P), DecidedBy.WORKERS, P, 1000.1, P),
    "b": (N, (N, N, P), DecidedBy.JUDGE, N, 1001.0, P),
    "c": (P, (N, P, N), DecidedBy.JUDGE, P, 1002.0, P),
    "d": (N, (N, N, N), DecidedBy.WORKERS, N, 1000.2, N),
}


def vote(item: str, worker: str, label: str | None, latency_ms: float = 1.0) -> Vote:
    return Vote(item_id=item, worker=worker, model="m", task="sentiment", label=label, latency_ms=latency_ms)


def verdict(item: str, label: str, by: DecidedBy, decided_at: float, **extra: object) -> Verdict:
    fields: dict[str, object] = {"policy": "criterion1", "policy_version": 1, "item_produced_at": 1000.0}
    fields.update(extra)
    return Verdict(item_id=item, task="sentiment", label=label, decided_by=by, decided_at=decided_at, **fields)


def measurement(with_gold: bool = True) -> Measurement:
    votes: list[Vote] = []
    verdicts: list[Verdict] = []
    judge_only: list[Verdict] = []
    for item, (gold, labels, by, final, at, alone) in TABLE.items():
        mine = [
            vote(item, w, label, latency_ms=float(n))
            for n, (w, label) in enumerate(zip(WORKERS, labels, strict=True), 1)
        ]
        votes += mine
        judged = by == DecidedBy.JUDGE
        verdicts.append(
            verdict(
                item,
                final,
                by,
                at,
                gold=gold if with_gold else None,
                votes=tuple(mine) if judged else (),
                judge_latency_ms=100.0 if judged else None,
            )
        )
        judge_only.append(
            verdict(
                item,
                alone,
                DecidedBy.JUDGE,
                2000.0 + len(judge_only) + 1,
                item_produced_at=2000.0,
                gold=gold if with_gold else None,
                judge_latency_ms=100.0,
            )
        )
    return Measurement(
        task="sentiment", source="table", item_ids=list(TABLE), workers=WORKERS, judge="hash:judge",
        verdicts=verdicts, votes=votes, judge_only=judge_only, cascade_rounds=[Round(1000.0, list(TABLE))],
        judge_only_rounds=[Round(2000.0, list(TABLE))],
    )  # fmt: skip


def test_latency_percentiles_interpolate_between_items() -> None:
    """Latencies 100, 200, 1000, 2000 ms give p50 600, p95 1850, p99 1970 and mean 825."""
    summary = latency_summary(measurement().verdicts)
    assert summary == pytest.approx({"p50": 600.0, "p95": 1850.0, "p99": 1970.0, "mean": 825.0})


def test_decided_by_shares_name_every_route_and_sum_to_one() -> None:
    """Two worker and two judge decisions: 0.5 / 0.5 / 0.0, with fallback present at zero."""
    assert decided_by_shares(measurement().verdicts) == {"workers": 0.5, "judge": 0.5, "fallback": 0.0}
    assert decided_by_shares([]) == {"workers": 0.0, "judge": 0.0, "fallback": 0.0}


def test_wall_time_runs_from_start_to_the_last_decision() -> None:
    """The pass started at 1000.0 and its last verdict came at 1002.0: 2.0 s (0.0 with no verdicts)."""
    rounds = measurement().cascade_rounds
    assert wall_seconds(rounds, measurement().verdicts) == pytest.approx(2.0)
    assert wall_seconds(rounds, []) == 0.0


def test_wall_time_of_rounds_adds_each_rounds_own_span() -> None:
    """Round a+d from 1000.0 (last at 1000.2) and round b+c from 1000.8 (last at 1002.0): 0.2 + 1.2 s."""
    rounds = [Round(1000.0, ["a", "d"]), Round(1000.8, ["b", "c"])]
    assert round_walls(rounds, measurement().verdicts) == pytest.approx([0.2, 1.2])
    assert wall_seconds(rounds, measurement().verdicts) == pytest.approx(1.4)


def test_decision_times_lay_rounds_end_to_end() -> None:
    """In the second round, times continue from where the first round's wall time ended."""
    m = measurement()
    rounds = [Round(1000.0, ["a", "d"]), Round(1000.8, ["b", "c"])]
    series = build_report(
        Measurement(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "cascade_rounds": rounds})
    )
    times = [(t, by) for t, by in series["series"]["decisions"]]
    assert times == [(0.1, "workers"), (0.2, "workers"), (pytest.approx(0.4), "judge"), (pytest.approx(1.4), "judge")]
    assert series["series"]["rounds"] == 2


def test_compute_seconds_add_vote_and_judge_latencies() -> None:
    """4 items x (1 + 2 + 3) ms of votes plus 2 judge calls of 100 ms = 0.224 s."""
    m = measurement()
    assert compute_seconds(m.votes, m.verdicts) == pytest.approx(0.224)


def test_expected_speedup_follows_the_paper_formula() -> None:
    """1 / (10/100 + (1 - 0.8)) = 3.33; unknown judge latency gives None."""
    assert expected_speedup(10.0, 100.0, 0.8) == pytest.approx(1 / 0.3)
    assert expected_speedup(10.0, 0.0, 0.8) is None


def test_overrule_counts_judge_labels_against_the_workers_plurality() -> None:
    """b: plurality negative, judge negative; c: plurality negative, judge positive -> 1 of 2."""
    assert judge_overrule_rate(measurement().verdicts) == 0.5


def test_overrule_is_none_without_judge_decisions_or_usable_votes() -> None:
    """No judge verdicts, or judge verdicts whose votes all abstained, leave the rate undefined."""
    abstained = verdict("x", P, DecidedBy.JUDGE, 1.0, votes=(vote("x", "w1", None),))
    assert judge_overrule_rate([verdict("y", P, DecidedBy.WORKERS, 1.0)]) is None
    assert judge_overrule_rate([abstained]) is None


def test_worker_answers_fill_missing_votes_with_none() -> None:
    """A worker that never voted on an item answers None there, in item order."""
    votes = [vote("a", "w1", P), vote("b", "w2", N)]
    assert worker_answers(votes, ["a", "b"], ["w1", "w2"]) == {"w1": [P, None], "w2": [None, N]}


def test_build_report_quality_and_speed_figures() -> None:
    """Cascade right on all 4, judge alone on 3, w1/w2/w3 on 3/4/2; speedup 4 s / 2 s; expected 1/(3/100 + 0.5)."""
    r = build_report(measurement())
    assert (r["items"], r["accuracy_cascade"], r["accuracy_judge_only"]) == (4, 1.0, 0.75)
    assert r["judge_rate"] == 0.5 and r["judge_overrule_rate"] == 0.5
    assert {w: r["per_worker"][w]["accuracy"] for w in WORKERS} == {"w1": 0.75, "w2": 1.0, "w3": 0.5}
    assert r["per_worker"]["w1"]["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert r["per_worker"]["w3"]["mean_latency_ms"] == 3.0
    assert r["wall_s_cascade"] == pytest.approx(2.0) and r["wall_s_judge_only"] == pytest.approx(4.0)
    assert r["speedup"] == pytest.approx(2.0)
    assert r["expected_speedup"] == pytest.approx(1 / (0.03 + 0.5))
    assert r["compute_s_cascade"] == pytest.approx(0.224) and r["compute_s_judge_only"] == pytest.approx(0.4)
    assert r["throughput_items_per_s"] == pytest.approx(2.0)
    expected_by_tier = {"w1": 0.004, "w2": 0.008, "w3": 0.012, "judge": 0.2, "judge_only": 0.4}
    assert r["compute_s_by_tier"] == pytest.approx(expected_by_tier)


def test_build_report_agreement_matrix() -> None:
    """w1 agrees with the final label on 3 of 4; w2 and w3 with each other on 2 of 4; gold is a row."""
    matrix = build_report(measurement())["worker_agreement"]
    assert matrix["w1"]["final"] == 0.75 and matrix["w2"]["w3"] == 0.5 and matrix["w1"]["w3"] == 0.75
    assert matrix["judge_only"]["gold"] == 0.75 and set(matrix) == {*WORKERS, "final", "judge_only", "gold"}


def test_build_report_without_gold_omits_accuracy() -> None:
    """Unlabelled input: no accuracy or macro-F1 anywhere, everything else still present."""
    r = build_report(measurement(with_gold=False))
    assert not [k for k in r if k.startswith(("accuracy", "macro_f1"))]
    assert "accuracy" not in r["per_worker"]["w1"] and "gold" not in r["worker_agreement"]
    assert r["judge_rate"] == 0.5


def test_build_report_ignores_items_outside_the_timed_set() -> None:
    """Warm-up verdicts and votes (ids not in item_ids) change no figure."""
    m = measurement()
    extra_verdict = verdict("__warmup-0", N, DecidedBy.JUDGE, 5000.0, judge_latency_ms=9e6)
    extra_vote = vote("__warmup-0", "w1", N, latency_ms=9e6)
    fields = {f: getattr(m, f) for f in m.__dataclass_fields__}
    noisy_m = Measurement(**{**fields, "verdicts": [*m.verdicts, extra_verdict], "votes": [*m.votes, extra_vote]})
    clean, noisy_report = build_report(m), build_report(noisy_m)
    assert noisy_report == clean


def test_nice_ticks_cover_the_maximum_with_round_steps() -> None:
    """7 -> 0..8 in steps of 2; 0 still gives an axis."""
    assert svg.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert svg.nice_ticks(0) == [0.0, 1.0]


def test_html_is_self_contained_and_shows_every_chart() -> None:
    """The page has its six charts plus accuracy, and loads nothing from elsewhere."""
    page = render_html(build_report(measurement()))
    assert page.count("<svg") == 7
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "<script" not in page and "2.00x" in page


def test_audits_are_judge_calls_and_count_in_the_cascade_time() -> None:
    """An audit of accepted item a (decided by the judge at 1003.0): 3 judge calls of 4 items, the
    cascade's wall time runs to the audit, and its judge latency counts as compute."""
    audit = verdict("a", P, DecidedBy.JUDGE, 1003.0, judge_latency_ms=100.0, reason="audit")
    m = replace(measurement(), audits=[audit], policy={"name": "target"})
    report = build_report(m)
    assert (report["audits"], report["judge_calls"]) == (1, 3)
    assert report["judge_call_reduction"] == pytest.approx(4 / 3)
    assert report["wall_s_cascade"] == pytest.approx(3.0)
    assert report["compute_s_by_tier"]["judge"] == pytest.approx(0.3)
    assert report["policy"] == {"name": "target", "versions": {"1": 4}}
    assert report["judge_calls_over_time"] == [1.0, 1.0, 1.0, 0.0]
    assert (report["first_accept"], report["disagreement_accepted"]) == (0, 0.0)


def test_the_report_says_which_policy_decided_and_the_rule_in_force() -> None:
    """The target policy's target, rule version, cut-off and origin are in the page's figures."""
    rule = {"version": 3, "cutoff": 0.9123, "audit_rate": 0.02, "reason": "warm start",
            "provenance": {"data": "dev.jsonl"}}  # fmt: skip
    policy = {"name": "target", "max_disagreement": 0.02, "confidence": 0.95, "rule": rule}
    m = replace(measurement(), policy=policy)
    page = render_html(build_report(m))
    for fragment in ("at most 2.0% of accepted labels changed by the judge", "at 95.0% confidence",
                     "v3 (warm start, fitted on dev.jsonl)", "trust cut-off 0.9123", "audit rate 2.0%"):  # fmt: skip
        assert fragment in page


def test_the_report_leads_with_the_saving() -> None:
    """The headline (terminal and page) puts judge calls, wall clock and accuracy against
    judge-only first, then the bound beside the measured disagreement and the judge rate over time."""
    audit = verdict("a", P, DecidedBy.JUDGE, 1003.0, judge_latency_ms=100.0, reason="audit")
    policy = {"name": "target", "max_disagreement": 0.05, "confidence": 0.95}
    report = build_report(replace(measurement(), audits=[audit], policy=policy))
    lines = headline(report)
    assert lines[0].startswith("judge calls: 3 for 4 items (audits included), 1.33x fewer than judge-only")
    assert lines[1].startswith("wall clock:") and "faster (same run" in lines[1]
    assert lines[2].startswith("accuracy vs gold: cascade")
    assert "at most 5.0% of accepted labels" in lines[3] and "measured 0.0%" in lines[3]
    assert report["judge_calls_over_time"] == [1.0, 1.0, 1.0, 0.0]
    assert lines[4] == "judge calls per item over the stream: ███▁ (100.0% first tenth, 0.0% last)"
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert all(html.escape(line) in render_html(report) for line in lines)
