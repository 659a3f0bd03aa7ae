"""Exactly one committed label per item through kill -9, restarts and rebalances."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.kit import isolated_settings, make_topics, read_topic, running, start_tier
from tests.integration.pipeline_kit import CLEAN_PATTERNS, WORKERS, Expected, worker_main, write_scripted_items
from tribunal.core.settings import Settings
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import Verdict


async def _label_count_reaches(settings: Settings, count: int) -> None:
    await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= count, timeout_s=180)


def _outcome(expected: Expected) -> tuple[str, str]:
    return expected.label, expected.decided_by


def _assert_exactly_once(labels: list[Verdict], expected: dict[str, Expected]) -> None:
    counts = Counter(v.item_id for v in labels)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    missing = set(expected) - set(counts)
    assert not duplicates, f"{len(duplicates)} items labelled more than once, e.g. {list(duplicates)[:5]}"
    assert not missing, f"{len(missing)} items never labelled, e.g. {sorted(missing)[:5]}"
    wrong = [v.item_id for v in labels if (v.label, v.decided_by.value) != _outcome(expected[v.item_id])]
    assert not wrong, f"{len(wrong)} labels differ from the policy's, e.g. {wrong[:5]}"


async def _kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


@pytest.mark.slow
async def test_kill_aggregator_and_judge_repeatedly_exactly_one_label_each(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """5,000 items; the aggregator and the judge are each kill -9'd three times mid-run and restarted."""
    settings = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 600_000}, runtime={"batch_size": 100}
    )
    await make_topics(settings)
    expected = write_scripted_items(tmp_path / "items.jsonl", 5_000, CLEAN_PATTERNS)
    await ingest(settings, str(tmp_path / "items.jsonl"))

    # Slow scripted workers stretch the run so that the kills land in its middle.
    workers = [worker_main(settings, name, f"scripted:{name}?delay_ms=150") for name in WORKERS]
    async with running(*workers):
        aggregator = await start_tier(settings, "aggregator", instance="agg")
        judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
        try:
            for round_, threshold in enumerate((400, 1_200, 2_000, 2_800, 3_600, 4_200)):
                await _label_count_reaches(settings, threshold)
                if round_ % 2 == 0:
                    await _kill(aggregator)
                    aggregator = await start_tier(settings, "aggregator", instance="agg")
                else:
                    await _kill(judge)
                    judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
            await _label_count_reaches(settings, 5_000)
        finally:
            for process in (aggregator, judge):
                if process.returncode is None:
                    process.terminate()
                    await process.wait()
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)
    _assert_exactly_once(labels, expected)


@pytest.mark.slow
async def test_two_aggregators_one_stopped_mid_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two aggregator instances share the partitions; one stops mid-run, the other takes over its partitions."""
    settings = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 600_000}, runtime={"batch_size": 100}
    )
    await make_topics(settings)
    expected = write_scripted_items(tmp_path / "items.jsonl", 3_000, CLEAN_PATTERNS)
    await ingest(settings, str(tmp_path / "items.jsonl"))

    workers = [worker_main(settings, name, f"scripted:{name}?delay_ms=100") for name in WORKERS]
    async with running(*workers):
        first = await start_tier(settings, "aggregator", instance="agg-a")
        second = await start_tier(settings, "aggregator", instance="agg-b")
        judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
        try:
            await _label_count_reaches(settings, 800)
            second.terminate()  # graceful: finishes its batch, commits, leaves the group
            assert await second.wait() == 0
            await _label_count_reaches(settings, 1_600)
            await _kill(first)  # and a crash of the survivor, restarted under its own id
            first = await start_tier(settings, "aggregator", instance="agg-a")
            await _label_count_reaches(settings, 3_000)
        finally:
            for process in (first, second, judge):
                if process.returncode is None:
                    process.terminate()
                    await process.wait()
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)
    _assert_exactly_once(labels, expected)


@pytest.mark.slow
async def test_awaited_verdict_tickets_survive_an_aggregator_kill(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Items escalate while no judge runs; the aggregator is kill -9'd with every escalation still
    awaiting its verdict and restarted under a new instance id; then the judge answers. Each ticket
    was restored from the decided-id log: one label per item, and no verdict refused."""
    settings = isolated_settings(kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 600_000})
    await make_topics(settings)
    expected = write_scripted_items(tmp_path / "items.jsonl", 600, CLEAN_PATTERNS)
    judged = sum(1 for e in expected.values() if e.decided_by != "workers")
    assert judged > 50, "the scripted mix escalates enough items to matter"
    await ingest(settings, str(tmp_path / "items.jsonl"))

    async with running(*(worker_main(settings, name) for name in WORKERS)):
        aggregator = await start_tier(settings, "aggregator", instance="agg-a")
        try:
            await read_topic(settings, settings.topics.judge_topic, until=lambda rs: len(rs) >= judged, timeout_s=180)
            await _label_count_reaches(settings, len(expected) - judged)
            await _kill(aggregator)
            aggregator = await start_tier(settings, "aggregator", instance="agg-b")
            judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
            try:
                await _label_count_reaches(settings, len(expected))
            finally:
                judge.terminate()
                await judge.wait()
        finally:
            if aggregator.returncode is None:
                aggregator.terminate()
                await aggregator.wait()
    labels = await read_topic(settings, settings.topics.labels_topic, Verdict)
    _assert_exactly_once(labels, expected)
    refused = await read_topic(settings, settings.topics.dlq(settings.topics.verdicts_topic))
    assert refused == [], "every verdict answered an escalation whose ticket survived the kill"
