"""The target policy on a real broker: it learns a rule from the judge, the rule is shared by every
aggregator through the rules topic, and it survives an aggregator's kill -9."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.integration.kit import isolated_settings, make_topics, read_topic, running, start_tier
from tests.integration.pipeline_kit import WORKERS, worker_main
from tribunal.consumers.policy.target import Rule
from tribunal.core.settings import Settings
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import Verdict

pytestmark = [pytest.mark.slow, pytest.mark.broker]

# A loose target and a small δ budget so that a few hundred items certify a cut-off.
TARGET = {"max_disagreement": 0.05, "confidence": 0.8, "min_audit_rate": 0.1}


def _settings(bootstrap: str) -> Settings:
    aggregator = {"policy": "target", "deadline_ms": 600_000, "target": TARGET}
    return isolated_settings(bootstrap, aggregator=aggregator, runtime={"batch_size": 50})


def _write_items(path: Path, start: int, count: int) -> dict[str, bool]:
    """Items scripted so that 7 in 10 are unanimous and the judge agrees (easy), the rest split 2-1
    with the judge siding with the minority every other time (hard). Returns id -> easy."""
    easy: dict[str, bool] = {}
    with path.open("w") as out:
        for n in range(start, start + count):
            item_id = f"item-{n:06d}"
            is_easy = n % 10 < 7
            third, judge = ("positive", "positive") if is_easy else ("negative", "negative" if n % 2 else "positive")
            answers = {"w1": "positive", "w2": "positive", "w3": third, "judge": judge}
            out.write(json.dumps({"id": item_id, "text": f"text {n}", "task": "sentiment3", **answers}) + "\n")
            easy[item_id] = is_easy
    return easy


TASK = "sentiment3"


async def _rules(settings: Settings, until: Any = None) -> list[Rule]:
    """The rules of this test's task. The aggregator builds (and its leader publishes) every
    task's rule when it starts, so the topic also holds the other tasks' shipped rules."""
    records = await read_topic(settings, settings.topics.rules_topic, until=until, timeout_s=240)
    rules = [Rule.from_dict(orjson.loads(r.value)) for r in records]
    return [rule for rule in rules if rule.task == TASK]


def _certified(records: list[Any]) -> bool:
    values = [orjson.loads(r.value) for r in records]
    return any(v["task"] == TASK and v["cutoff"] is not None for v in values)


async def _labels(settings: Settings, count: int) -> list[Verdict]:
    await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= count, timeout_s=240)
    return await read_topic(settings, settings.topics.labels_topic, Verdict)


def _assert_one_label_each(labels: list[Verdict], ids: set[str]) -> None:
    counts = Counter(v.item_id for v in labels)
    assert {i for i, n in counts.items() if n > 1} == set()
    assert set(counts) == ids


def _assert_one_writer(rules: list[Rule]) -> None:
    """Versions on the topic strictly increase: one writer, no two rules with one version."""
    versions = [r.version for r in rules]
    assert versions == sorted(set(versions)), versions


async def _kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


async def _stop(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def test_learned_rule_survives_an_aggregator_kill(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Cold start: every item goes to the judge until the judge's verdicts certify a cut-off; then
    the aggregator is kill -9'd and restarted, and it decides the next items with that rule (or a
    later re-fit), not from a cold start. One label per item throughout."""
    settings = _settings(kafka_bootstrap)
    await make_topics(settings)
    easy = _write_items(tmp_path / "first.jsonl", 0, 400)
    await ingest(settings, str(tmp_path / "first.jsonl"))
    async with running(*(worker_main(settings, w) for w in WORKERS)):
        aggregator = await start_tier(settings, "aggregator", instance="agg")
        judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
        try:
            await _labels(settings, 400)
            before = await _rules(settings, until=_certified)
            await _kill(aggregator)
            aggregator = await start_tier(settings, "aggregator", instance="agg")
            later = _write_items(tmp_path / "second.jsonl", 400, 200)
            await ingest(settings, str(tmp_path / "second.jsonl"))
            labels = await _labels(settings, 600)
        finally:
            await _stop(aggregator, judge)
    _assert_one_label_each(labels, set(easy) | set(later))
    rules = await _rules(settings)
    _assert_one_writer(rules)
    certified = min(r.version for r in before if r.cutoff is not None)
    after = [v for v in labels if v.item_id in later]
    assert all(v.policy == "target" for v in labels)
    accepted = [v for v in after if v.decided_by.value == "workers"]
    assert {v.item_id for v in accepted} == {i for i, e in later.items() if e}, "easy items accepted after restart"
    assert min(v.policy_version for v in accepted) >= certified
    assert {v.policy_version for v in labels} <= {0} | {r.version for r in rules}


async def _until_both_apply_a_certified_rule(settings: Settings, tmp_path: Path, sent: int) -> int:
    """Send small probe batches until every easy probe of a batch is accepted, on every items
    partition: both aggregators then decide under a certified rule (the follower reads it from
    the rules topic a moment after the leader publishes it). Probes are not asserted on.
    Returns how many probe items were sent."""
    partitions = list(range(settings.topics.partitions))
    partitioner = DefaultPartitioner()
    probes = 0
    for attempt in range(30):
        path = tmp_path / f"probe-{attempt}.jsonl"
        batch = _write_items(path, 100_000 + probes, 40)
        await ingest(settings, str(path))
        probes += len(batch)
        labels = [v for v in await _labels(settings, sent + probes) if batch.get(v.item_id)]
        owners = {partitioner(v.item_id.encode(), partitions, partitions) for v in labels}
        if owners == set(partitions) and all(v.decided_by.value == "workers" for v in labels):
            return probes
    raise AssertionError("the aggregators never both accepted easy items under a certified rule")


async def test_two_aggregators_apply_the_same_published_rule(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Two aggregator processes share the item partitions; only one of them writes rules, and once a
    cut-off is certified the easy items of every partition (so of both instances) are accepted
    under versions read from the rules topic."""
    settings = _settings(kafka_bootstrap)
    await make_topics(settings)
    _write_items(tmp_path / "first.jsonl", 0, 400)
    await ingest(settings, str(tmp_path / "first.jsonl"))
    async with running(*(worker_main(settings, w) for w in WORKERS)):
        first = await start_tier(settings, "aggregator", instance="agg-a")
        second = await start_tier(settings, "aggregator", instance="agg-b")
        judge = await start_tier(settings, "judge", "--classifier", "scripted:judge", instance="judge")
        try:
            await _labels(settings, 400)
            await _rules(settings, until=_certified)
            probes = await _until_both_apply_a_certified_rule(settings, tmp_path, sent=400)
            later = _write_items(tmp_path / "second.jsonl", 400, 300)
            await ingest(settings, str(tmp_path / "second.jsonl"))
            labels = await _labels(settings, 700 + probes)
        finally:
            await _stop(first, second, judge)
    rules = await _rules(settings)
    _assert_one_writer(rules)
    accepted = [v for v in labels if v.item_id in later and v.decided_by.value == "workers"]
    assert {v.item_id for v in accepted} == {i for i, e in later.items() if e}
    assert {v.policy_version for v in accepted} <= {r.version for r in rules if r.cutoff is not None}
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.topics.partitions))
    owners = {partitioner(v.item_id.encode(), partitions, partitions) for v in accepted}
    assert owners == set(partitions), "every item partition (both aggregators) accepted under a published rule"
