"""The three tiers on a real broker: every item gets exactly the label the policy implies."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import (
    WORKERS,
    aggregator_main,
    judge_main,
    worker_main,
    write_scripted_items,
)
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import JudgeRequest, Verdict


async def test_happy_path_labels_match_policy_and_judge_sees_only_disagreements(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """3 scripted workers, 1,000 items: labels exactly as Criterion 1 says; the judge sees only disagreements."""
    # A deadline far beyond the run's length, so outcomes depend on the votes alone, not on timing.
    settings = isolated_settings(kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 120_000})
    await make_topics(settings)
    expected = write_scripted_items(tmp_path / "items.jsonl", 1_000)
    report = await ingest(settings, str(tmp_path / "items.jsonl"))
    assert report.published == 1_000

    tiers = [worker_main(settings, name) for name in WORKERS] + [aggregator_main(settings), judge_main(settings)]
    async with running(*tiers):
        await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= 1_000, timeout_s=120)
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)
    requests = await read_topic(settings, settings.topics.judge_topic, JudgeRequest)

    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(expected, 1)), "exactly one label per item"
    for verdict in labels:
        want = expected[verdict.item_id]
        assert (verdict.label, verdict.decided_by.value) == (want.label, want.decided_by), verdict.item_id
        assert verdict.policy == "majority"
    escalated = {i for i, e in expected.items() if e.decided_by == "judge"}
    assert {r.item.id for r in requests} == escalated
    assert len(requests) == len(escalated)
    assert all(r.reason.value == "disagreement" for r in requests)
    three_way = next(v for v in labels if v.item_id == "item-000003")  # pattern 3: three different labels
    assert [(v.worker, v.label) for v in three_way.votes] == [("w1", "positive"), ("w2", "negative"), ("w3", "neutral")]


async def test_one_worker_down_decides_by_two_or_escalates_at_deadline(kafka_bootstrap: str, tmp_path: Path) -> None:
    """w3 never runs: items where w1 and w2 agree are accepted; the rest escalate with reason deadline."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 700})
    await make_topics(settings)
    write_scripted_items(tmp_path / "items.jsonl", 70)
    await ingest(settings, str(tmp_path / "items.jsonl"))

    tiers = [worker_main(settings, "w1"), worker_main(settings, "w2"), aggregator_main(settings), judge_main(settings)]
    async with running(*tiers):
        labels = await read_topic(settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 70)
    by_id = {v.item_id: v for v in labels}
    assert len(by_id) == len(labels) == 70
    for verdict in labels:
        voted = {v.worker: v.label for v in verdict.votes}
        assert "w3" not in voted
        agree = voted.get("w1") is not None and voted.get("w1") == voted.get("w2")
        if agree:
            assert verdict.decided_by.value == "workers" and verdict.label == voted["w1"]
        else:
            assert verdict.decided_by.value == "judge"
            assert verdict.reason is not None and verdict.reason.value in ("deadline", "disagreement")
    reasons = Counter(v.reason.value for v in labels if v.reason is not None)
    assert reasons["deadline"] > 0


async def test_all_workers_down_every_item_judged_after_deadline(kafka_bootstrap: str, tmp_path: Path) -> None:
    """No worker runs at all: every item is escalated at its deadline and labelled by the judge."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"deadline_ms": 500})
    await make_topics(settings)
    write_scripted_items(tmp_path / "items.jsonl", 30)
    await ingest(settings, str(tmp_path / "items.jsonl"))

    async with running(aggregator_main(settings), judge_main(settings)):
        labels = await read_topic(settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 30)
    assert len({v.item_id for v in labels}) == 30
    assert all(v.decided_by.value == "judge" and v.reason is not None and v.reason.value == "deadline" for v in labels)
    assert all(v.votes == () for v in labels)
