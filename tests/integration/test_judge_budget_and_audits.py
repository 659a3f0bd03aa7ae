"""Shadow audits and the judge budget on a real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import (
    PATTERNS,
    WORKERS,
    aggregator_main,
    judge_main,
    worker_main,
    write_scripted_items,
)
from tribunal.consumers.aggregator.judge_budget import KafkaBacklogProbe
from tribunal.consumers.aggregator.processor import audited
from tribunal.consumers.judge import group_id as judge_group
from tribunal.core.kafka_settings import RuntimeSettings
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import JudgeRequest, Verdict


async def test_audit_sample_reaches_judge_and_never_changes_labels(kafka_bootstrap: str, tmp_path: Path) -> None:
    """audit_rate=0.05: about 5% of agreed items also go to the judge (reason audit); every label stays the workers'."""
    settings = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1", "audit_rate": 0.05, "deadline_ms": 120_000}
    )
    await make_topics(settings)
    unanimous = [PATTERNS[0]]  # all workers say positive; the scripted judge says negative
    expected = write_scripted_items(tmp_path / "items.jsonl", 600, unanimous)
    await ingest(settings, str(tmp_path / "items.jsonl"))
    sample = {i for i in expected if audited(i, 0.05)}

    tiers = [worker_main(settings, name) for name in WORKERS] + [aggregator_main(settings), judge_main(settings)]
    async with running(*tiers):
        labels = await read_topic(settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 600)
        audits = await read_topic(
            settings, settings.topics.audits_topic, Verdict, until=lambda rs: len(rs) >= len(sample)
        )
    requests = await read_topic(settings, settings.topics.judge_topic, JudgeRequest)
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)

    assert 0.02 * 600 <= len(sample) <= 0.08 * 600
    assert {r.item.id for r in requests} == sample and all(r.reason.value == "audit" for r in requests)
    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(expected, 1))
    assert all(v.decided_by.value == "workers" and v.label == "positive" for v in labels)
    assert {a.item_id for a in audits} == sample and all(a.label == "negative" for a in audits)


async def test_judge_budget_bounds_backlog_and_every_item_gets_one_label(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A judge far slower than the escalation rate: its backlog stays within the bound; the rest fall back, flagged."""
    max_backlog = 10
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"deadline_ms": 60_000, "judge_budget_per_s": 20.0, "judge_max_backlog": max_backlog},
    )
    await make_topics(settings)
    disagreements = [PATTERNS[3]]  # three different labels: every item escalates
    expected = write_scripted_items(tmp_path / "items.jsonl", 300, disagreements)
    await ingest(settings, str(tmp_path / "items.jsonl"))
    # About 6 items/s: two per batch, 300 ms per batch.
    slow = settings.model_copy(
        update={"runtime": RuntimeSettings(**{**settings.runtime.model_dump(), "batch_size": 2})}
    )
    observed: list[int] = []

    async def watch_backlog() -> None:
        probe = KafkaBacklogProbe(settings, judge_group(settings))
        try:
            while True:
                observed.append(await probe())
                await asyncio.sleep(0.2)
        finally:
            await probe.close()

    tiers = [worker_main(settings, name) for name in WORKERS]
    tiers += [aggregator_main(settings), judge_main(slow, "scripted:judge?delay_ms=300")]
    watcher = asyncio.create_task(watch_backlog())
    try:
        async with running(*tiers):
            labels = await read_topic(settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 300)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)

    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(expected, 1)), "exactly one label per item"
    by = Counter(v.decided_by.value for v in labels)
    assert by["judge"] > 0 and by["fallback"] > 0, by
    assert all(v.reason is not None and v.reason.value == "disagreement" for v in labels)
    # Offsets count each transaction's commit marker too: up to one per judge partition beyond the
    # committed position, so the offset-based measure over-states the real backlog by that much.
    slack = settings.topics.judge_partitions
    assert max(observed) <= max_backlog + slack, f"judge backlog reached {max(observed)}"
