"""How `tribunal demo` turns its options into a plan: input files, tier names, quorum, child settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tribunal.core.settings import load_settings
from tribunal.core.supervisor import child_specs
from tribunal.demo.measure import DEMO_JUDGE_BATCH, pass_settings
from tribunal.demo.processes import child_env
from tribunal.demo.run import DemoOptions, choose_quorum, choose_tiers, load_input, make_plan
from tribunal.schemas.tasks import load_tasks


def hashed(path: Path) -> DemoOptions:
    """The sentiment demo on `path` with instant `hash:` workers and judge."""
    return DemoOptions(path, "sentiment", workers=["hash:1", "hash:2", "hash:3"], judge="hash:j")


@pytest.mark.parametrize(
    ("workers", "labels", "configured", "given", "expected"),
    [
        (3, 2, 2, None, 3),  # binary, 3 workers: 2 of 3 always agree, so unanimity
        (3, 3, 2, None, 2),  # three labels: 1-1-1 is possible, the configured quorum can fail
        (3, 77, 2, None, 2),
        (3, 2, 2, 2, 2),  # an explicit quorum always wins
        (2, 2, 2, None, 2),  # 2 workers, binary: 1-1 possible
    ],
)
def test_quorum_becomes_unanimity_only_when_the_configured_one_cannot_fail(
    workers: int, labels: int, configured: int, given: int | None, expected: int
) -> None:
    """The judge must be reachable: the quorum is raised only when pigeonhole guarantees it."""
    assert choose_quorum(workers, labels, configured, given) == expected


def test_tiers_default_to_the_task_and_are_named_as_the_aggregator_expects() -> None:
    """Given specs win; workers are named w1, w2, ... (the names the aggregator, thresholds and
    calibrated rules use by default), each spec kept beside its name for reports."""
    task = load_tasks().get("sentiment")
    names, judge = choose_tiers(task, load_settings(), ["vader", "tfidf:m.npz?head=nb"], "hash:judge")
    assert names == {"w1": "vader", "w2": "tfidf:m.npz?head=nb"} and judge == "hash:judge"
    default_names, default_judge = choose_tiers(task, load_settings(), None, None)
    assert list(default_names.values()) == list(task.workers or ("hash:1", "hash:2", "hash:3"))
    assert default_judge == (task.judge or "hash:judge")


def test_load_input_reads_csv_without_labels_and_rejects_repeated_ids(tmp_path: Path) -> None:
    """CSV with no label column loads with no gold; a repeated id and an empty text are rejected by line."""
    path = tmp_path / "in.csv"
    path.write_text("id,text\na,great\nb,\na,again\nc,awful\n", encoding="utf-8")
    items, rejected = load_input(path, "sentiment", load_settings(), None)
    assert [(i.id, i.gold) for i in items] == [("a", None), ("c", None)]
    assert [r.line for r in rejected] == [3, 4]


def test_load_input_stops_at_the_limit(tmp_path: Path) -> None:
    """`limit` caps the items read from a labelled JSONL file."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": str(n), "text": "ok", "label": "positive"}) + "\n" for n in range(9)))
    items, _ = load_input(path, "sentiment", load_settings(), 4)
    assert [i.id for i in items] == ["0", "1", "2", "3"] and items[0].gold == "positive"


def test_children_get_their_pass_settings_through_env(tmp_path: Path) -> None:
    """The cascade's aggregator sees the run's prefix, worker names and quorum; the judge-only pass has one judge."""
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "text": "fine", "label": "positive"}) + "\n", encoding="utf-8")
    settings = load_settings(aggregator={"policy": "criterion1"})
    plan, rejected = make_plan(settings, hashed(path))
    cascade, alone = pass_settings(settings, "stamp", plan)
    assert rejected == 0 and plan.quorum == 3
    assert [c.args[0] for c in child_specs(alone)] == ["judge"]
    aggregator = next(c for c in child_specs(cascade) if c.args[0] == "aggregator")
    env = child_env(cascade, aggregator, None)
    assert env["TRIBUNAL_TOPICS__PREFIX"] == "demo-stamp-" and alone.topics.prefix == "demo-stamp-jo-"
    assert json.loads(env["TRIBUNAL_AGGREGATOR__WORKERS"]) == ["w1", "w2", "w3"]
    assert env["TRIBUNAL_AGGREGATOR__QUORUM"] == "3" and env["TRIBUNAL_JUDGE__CLASSIFIER"] == "hash:j"


def test_demo_judges_answer_in_small_batches_and_no_tier_inherits_a_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verdicts arrive a few at a time (a whole pass in one batch would look stalled), unless
    the settings name a batch size; the caller's metrics port is not handed to every tier."""
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "text": "fine", "label": "positive"}) + "\n", encoding="utf-8")
    monkeypatch.setenv("TRIBUNAL_METRICS_PORT", "9400")
    options = hashed(path)
    for settings, wanted in ((load_settings(), DEMO_JUDGE_BATCH), (load_settings(judge={"batch_size": 3}), 3)):
        plan, _ = make_plan(settings, options)
        _, alone = pass_settings(settings, "stamp", plan)
        env = child_env(alone, child_specs(alone)[0], None)
        assert env["TRIBUNAL_JUDGE__BATCH_SIZE"] == str(wanted)
        assert "TRIBUNAL_METRICS_PORT" not in env


def test_the_target_policy_keeps_the_configured_quorum(tmp_path: Path) -> None:
    """The default policy (target) has no quorum to raise: the plan keeps the configured one and
    says which policy decides, so the report prints exactly what ran."""
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "text": "fine", "label": "positive"}) + "\n", encoding="utf-8")
    plan, _ = make_plan(load_settings(), hashed(path))
    assert (plan.policy, plan.quorum) == ("target", 2)


def test_audits_due_follow_the_aggregators_draw() -> None:
    """The demo waits for exactly the audits the aggregator sent: accepted items whose audit draw
    is below the rate their verdict records (else the configured shadow-audit rate)."""
    from tribunal.consumers.policy.target import audit_draw
    from tribunal.demo.measure import audits_due
    from tribunal.schemas.messages import DecidedBy, Verdict

    def verdict(item: str, by: DecidedBy, rate: float | None) -> Verdict:
        return Verdict(item_id=item, task="sentiment", label="positive", decided_by=by, policy="target",
                       policy_version=1, audit_rate=rate, item_produced_at=0.0)  # fmt: skip

    ids = [f"i{n}" for n in range(400)]
    verdicts = [verdict(i, DecidedBy.WORKERS, 0.3) for i in ids[:200]] + [
        verdict(i, DecidedBy.JUDGE, 1.0) for i in ids[200:]
    ]
    expected = sum(audit_draw(i) < 0.3 for i in ids[:200])
    assert audits_due(verdicts, set(ids), 0.0) == expected > 0
    assert audits_due(verdicts, set(ids[:100]), 0.0) == sum(audit_draw(i) < 0.3 for i in ids[:100])
    shadow = [verdict(i, DecidedBy.WORKERS, None) for i in ids]
    assert audits_due(shadow, set(ids), 0.5) == sum(audit_draw(i) < 0.5 for i in ids)
