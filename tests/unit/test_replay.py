"""Replay: re-deciding a recorded vote log under another policy (pure core) and the CLI helpers."""

from __future__ import annotations

import pytest

from tribunal.consumers.policy.ballots import Accept, Ballot, Escalate, Policy, final
from tribunal.consumers.policy.reliability import Reliability
from tribunal.consumers.policy.voting import ConfidentMajority, Majority, WeightedVote
from tribunal.core.errors import ConfigError
from tribunal.core.settings import load_settings
from tribunal.producers.redecide import NO_LABEL, RecordedLog, ReplayOutcome, group_votes, redecide
from tribunal.producers.replay import parse_thresholds, parse_time, run_settings
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item, Verdict, Vote

WORKERS = ("w1", "w2", "w3")
NOW = 1_800_000_000.0


def item(n: int, gold: str | None = None) -> Item:
    return Item(id=f"i{n}", text=f"text {n}", task="sentiment3", metadata={"label": gold} if gold else {})


def votes(n: int, answers: str, confidences: tuple[float, ...] = (0.9, 0.9, 0.9)) -> list[Vote]:
    """One vote per worker: p/n/u = positive/negative/neutral, '-' abstains, '.' never voted."""
    names = {"p": "positive", "n": "negative", "u": "neutral", "-": None}
    return [
        Vote(item_id=f"i{n}", worker=w, model="m", task="sentiment3", label=names[a], confidence=c)
        for w, a, c in zip(WORKERS, answers, confidences, strict=True)
        if a != "."
    ]


def verdict(n: int, label: str, by: DecidedBy = DecidedBy.WORKERS) -> Verdict:
    return Verdict(
        item_id=f"i{n}", task="sentiment3", label=label, decided_by=by, policy="criterion1", policy_version=1,
        item_produced_at=NOW, judge_latency_ms=12.0 if by == DecidedBy.JUDGE else None,
    )  # fmt: skip


def run(log: RecordedLog, policy: Policy) -> ReplayOutcome:
    return redecide(log, lambda _task: policy, WORKERS, NOW)


STRICT = ConfidentMajority(2, thresholds={}, default_threshold=0.8, workers=WORKERS)
LOW = (0.6, 0.6, 0.6)

# answers, confidences, original verdict (label, decided_by) or None, audit label or None
#   -> new (label, decided_by) or None for a judge request, escalation reason or None, changed
TABLE = [
    ("ppp", (0.9,) * 3, ("positive", DecidedBy.WORKERS), None, ("positive", DecidedBy.WORKERS), None, False),
    ("ppn", (0.9, 0.95, 0.9), ("positive", DecidedBy.WORKERS), None, ("positive", DecidedBy.WORKERS), None, False),
    ("ppp", LOW, ("positive", DecidedBy.WORKERS), None, None, EscalationReason.LOW_CONFIDENCE, False),
    ("ppp", LOW, ("positive", DecidedBy.WORKERS), "negative", ("negative", DecidedBy.JUDGE),
     EscalationReason.LOW_CONFIDENCE, True),
    ("pnu", (0.9,) * 3, ("neutral", DecidedBy.JUDGE), None, ("neutral", DecidedBy.JUDGE),
     EscalationReason.DISAGREEMENT, False),
    ("pnu", (0.9,) * 3, ("neutral", DecidedBy.FALLBACK), None, None, EscalationReason.DISAGREEMENT, False),
    ("pp.", (0.9,) * 3, ("positive", DecidedBy.WORKERS), None, ("positive", DecidedBy.WORKERS), None, False),
    ("p..", (0.9,) * 3, None, None, None, EscalationReason.DEADLINE, False),
    ("p-.", (0.9,) * 3, ("negative", DecidedBy.JUDGE), None, ("negative", DecidedBy.JUDGE),
     EscalationReason.DEADLINE, False),
]  # fmt: skip


@pytest.mark.parametrize(("answers", "confs", "original", "audit", "new", "reason", "changed"), TABLE)
def test_redecide_table(
    answers: str,
    confs: tuple[float, ...],
    original: tuple[str, DecidedBy] | None,
    audit: str | None,
    new: tuple[str, DecidedBy] | None,
    reason: EscalationReason | None,
    changed: bool,
) -> None:
    """Each item gets the new policy's label, the recorded judge label, or a judge request."""
    log = RecordedLog(
        items=[item(0)],
        votes=votes(0, answers, confs),
        verdicts={"i0": verdict(0, *original)} if original else {},
        judge_labels={"i0": verdict(0, audit, DecidedBy.JUDGE)} if audit else {},
    )
    outcome = run(log, STRICT)
    if new is None:
        assert outcome.verdicts == []
        assert [(r.item.id, r.reason, r.policy) for r in outcome.requests] == [("i0", reason, "confident_majority")]
    else:
        assert outcome.requests == []
        [got] = outcome.verdicts
        assert (got.label, got.decided_by, got.reason, got.policy) == (*new, reason, "confident_majority")
        assert [v.worker for v in got.votes] == [w for w, a in zip(WORKERS, answers, strict=True) if a != "."]
    assert outcome.changed == int(changed)
    assert outcome.escalated == int(reason is not None)


def test_report_counts_rates_and_classes() -> None:
    """The diff report: changed, escalated, judge rates and per-original-label rows."""
    items = [item(n, gold="positive") for n in range(4)]
    log = RecordedLog(
        items=items,
        votes=votes(0, "ppp") + votes(1, "ppp", LOW) + votes(2, "pnu") + votes(3, "nnp", LOW),
        verdicts={
            "i0": verdict(0, "positive"),
            "i1": verdict(1, "positive"),
            "i2": verdict(2, "positive", DecidedBy.JUDGE),
        },
        judge_labels={"i1": verdict(1, "negative", DecidedBy.JUDGE)},
    )
    report = run(log, STRICT).report()
    assert report["items"] == 4
    assert (report["changed"], report["escalated"], report["judge_reused"], report["judge_requests"]) == (1, 3, 2, 1)
    assert report["source_judge_rate"] == 0.25
    assert report["new_judge_rate"] == 0.75
    assert report["by_class"] == {"positive": {"items": 3, "changed": 1}, NO_LABEL: {"items": 1, "changed": 0}}
    assert report["gold_accuracy"] == {"items": 3, "original": 1.0, "new": 2 / 3}


def test_criterion1_replay_of_a_criterion1_log_changes_nothing() -> None:
    """Re-deciding under the policy that made the log reproduces every label."""
    answers = ["ppp", "ppn", "pnu", "uu-", "nun"]
    originals = {f"i{n}": verdict(n, "neutral" if a == "pnu" else {"p": "positive", "u": "neutral", "n": "negative"}[
        max(set(a) - {"-"}, key=a.count)], DecidedBy.JUDGE if a == "pnu" else DecidedBy.WORKERS)
        for n, a in enumerate(answers)}  # fmt: skip
    log = RecordedLog(
        items=[item(n) for n in range(5)],
        votes=[v for n, a in enumerate(answers) for v in votes(n, a)],
        verdicts=originals,
    )
    outcome = run(log, Majority(2, workers=WORKERS))
    assert outcome.changed == 0
    assert {v.item_id: v.label for v in outcome.verdicts} == {k: v.label for k, v in originals.items()}
    assert outcome.escalated == 1


def test_first_copy_of_an_item_and_first_vote_per_worker_count() -> None:
    """Items sent twice are decided once; a repeated or unexpected worker's vote is ignored."""
    extra = [
        Vote(item_id="i0", worker="w1", model="m", task="sentiment3", label="negative", confidence=0.9),
        Vote(item_id="i0", worker="w9", model="m", task="sentiment3", label="negative", confidence=0.9),
    ]
    grouped = group_votes(votes(0, "pp.") + extra, WORKERS)
    assert [(v.worker, v.label) for v in grouped["i0"]] == [("w1", "positive"), ("w2", "positive")]
    outcome = run(RecordedLog(items=[item(0), item(0)], votes=votes(0, "pp.") + extra), STRICT)
    assert outcome.items == 1
    assert [v.label for v in outcome.verdicts] == ["positive"]


def test_weighted_policy_learns_from_reused_judge_labels() -> None:
    """A weighted replay learns from each reused judge label, in log order: once the judge has
    sided with w2 twice, w2's lone vote decides the third three-way split without the judge."""
    labels = ["negative", "neutral", "positive"]
    log = RecordedLog(
        items=[item(n) for n in range(3)],
        votes=[v for n in range(3) for v in votes(n, "pnu")],
        verdicts={f"i{n}": verdict(n, "negative", DecidedBy.JUDGE) for n in range(3)},
    )
    reliability = Reliability(labels)
    outcome = run(log, WeightedVote(reliability, threshold=0.75, workers=WORKERS))
    assert [(v.item_id, v.decided_by) for v in outcome.verdicts] == [
        ("i0", DecidedBy.JUDGE), ("i1", DecidedBy.JUDGE), ("i2", DecidedBy.WORKERS)
    ]  # fmt: skip
    assert outcome.verdicts[2].label == "negative"
    assert reliability.likelihood("w2", "negative", "negative") > reliability.likelihood("w1", "negative", "negative")
    fresh = run(RecordedLog(items=[item(2)], votes=votes(2, "pnu")), WeightedVote(Reliability(labels), workers=WORKERS))
    assert fresh.escalated == 1, "without the learned reliability the same split goes to the judge"


def test_decide_final_turns_wait_into_deadline() -> None:
    """With votes missing for good, a Wait is the deadline case; Accept and Escalate pass through."""
    policy = Majority(2, workers=WORKERS)
    assert final(policy, [Ballot("w1", "a", 0.9)], WORKERS) == Escalate(EscalationReason.DEADLINE)
    assert isinstance(final(policy, [Ballot("w1", "a", 0.9), Ballot("w2", "a", 0.5)], WORKERS), Accept)


def test_empty_log_gives_an_empty_report() -> None:
    """No items: zero counts and rates, never a division by zero."""
    report = run(RecordedLog(items=[], votes=[]), STRICT).report()
    assert (report["items"], report["new_judge_rate"], report["by_class"]) == (0, 0.0, {})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (None, {})),
        (["0.7"], (0.7, {})),
        (["0.7", "w1=0.9", "w2=0.5"], (0.7, {"w1": 0.9, "w2": 0.5})),
    ],
)
def test_parse_thresholds(values: list[str], expected: tuple[float | None, dict[str, float]]) -> None:
    """X sets every worker's threshold, WORKER=X one worker's."""
    assert parse_thresholds(values) == expected


@pytest.mark.parametrize("bad", ["=0.5", "w1=high", "x"])
def test_parse_thresholds_rejects_garbage(bad: str) -> None:
    """Unreadable thresholds are a ValueError, not a silent default."""
    with pytest.raises(ValueError, match=r".+"):
        parse_thresholds([bad])


@pytest.mark.parametrize(
    ("text", "ms"),
    [("2026-11-01T00:00Z", 1_793_491_200_000), ("2026-11-01T00:00", 1_793_491_200_000),
     ("2026-11-01T01:00+01:00", 1_793_491_200_000)],
)  # fmt: skip
def test_parse_time(text: str, ms: int) -> None:
    """ISO times with Z, an offset, or none (UTC) become epoch milliseconds."""
    assert parse_time(text) == ms


def test_run_settings_never_targets_the_source() -> None:
    """A run writes only RUN- topics; a run named like the source prefix is refused."""
    source = load_settings(topics={"prefix": "live-"})
    target = run_settings(source, "try1", 6)
    assert (target.topics.items_topic, target.topics.labels_topic) == ("try1-items", "try1-labels")
    assert target.topics.partitions == 6
    with pytest.raises(ConfigError):
        run_settings(source, "live", 6)
