"""Straggler detection on a real broker: slow workers are waited for, a stopped one is not."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from tests.integration.kit import isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import (
    CLEAN_PATTERNS,
    WORKERS,
    aggregator_main,
    judge_main,
    worker_main,
    write_scripted_items,
)
from tribunal.consumers.aggregator.membership import GroupWatch
from tribunal.core.metrics import VOTE_WAITS_OVER
from tribunal.core.settings import Settings
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import JudgeRequest, Verdict, VoteBatch


async def _heard_from(settings: Settings, workers: set[str]) -> None:
    """Every one of `workers` has written a position record: it has joined its group and reports."""

    def all_reported(batches: list[VoteBatch]) -> bool:
        return {b.worker for b in batches} >= workers

    await read_topic(settings, settings.topics.votes_topic, VoteBatch, until=all_reported, timeout_s=120)


async def _heard_from_every_worker(settings: Settings) -> None:
    await _heard_from(settings, set(WORKERS))


def _waits_over(cause: str) -> float:
    value: float = VOTE_WAITS_OVER.labels(cause)._value.get()
    return value


async def test_slow_workers_cause_no_deadline_escalation(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Workers slowed to ~60 items/s each behind a 600-item burst: items wait for votes ~10x the 1 s
    deadline (and past the 3 s ceiling), yet none escalates for lateness; every label is the policy's."""
    settings = isolated_settings(
        kafka_bootstrap,
        aggregator={"policy": "criterion1", "deadline_ms": 1_000, "ceiling_ms": 3_000},
        runtime={"batch_size": 10},
        worker={"progress_interval_ms": 100},
    )
    await make_topics(settings)
    expected = write_scripted_items(tmp_path / "items.jsonl", 600, CLEAN_PATTERNS)
    workers = [worker_main(settings, name, f"scripted:{name}?delay_ms=150") for name in WORKERS]
    async with running(*workers):
        await _heard_from_every_worker(settings)  # the workers are up before any item waits on them
        async with running(aggregator_main(settings), judge_main(settings)):
            await ingest(settings, str(tmp_path / "items.jsonl"))
            labels = await read_topic(
                settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 600, timeout_s=240
            )
    requests = await read_topic(settings, settings.topics.judge_topic, JudgeRequest)
    latest = max(v.decided_at - v.item_produced_at for v in labels)
    assert latest > 3.0, f"the workers must lag past the ceiling for this test to mean anything ({latest:.1f}s)"
    assert Counter(v.item_id for v in labels) == Counter(dict.fromkeys(expected, 1)), "exactly one label per item"
    assert [r.item.id for r in requests if r.reason.value == "deadline"] == []
    for verdict in labels:
        want = expected[verdict.item_id]
        assert (verdict.label, verdict.decided_by.value) == (want.label, want.decided_by), verdict.item_id


async def test_a_stopped_worker_has_its_items_escalated_at_the_deadline(kafka_bootstrap: str, tmp_path: Path) -> None:
    """w3 stops after a first batch: the next items that need its vote escalate with reason deadline once
    the 1 s deadline passes (no earlier, and long before the 30 s ceiling); the rest are decided by w1 and w2."""
    settings = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 1_000, "ceiling_ms": 30_000}
    )
    await make_topics(settings)
    write_scripted_items(tmp_path / "first.jsonl", 70, CLEAN_PATTERNS)
    stop_w3 = asyncio.Event()
    w3 = asyncio.create_task(worker_main(settings, "w3")(stop_w3))
    try:
        async with running(worker_main(settings, "w1"), worker_main(settings, "w2")):
            await _heard_from_every_worker(settings)
            async with running(aggregator_main(settings), judge_main(settings)):
                await ingest(settings, str(tmp_path / "first.jsonl"))
                await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= 70)
                stop_w3.set()
                await asyncio.wait_for(w3, 60)
                silent_before = _waits_over("silent")
                second = {f"late-{n}": n for n in range(60)}
                _write_second(tmp_path / "second.jsonl", second)
                await ingest(settings, str(tmp_path / "second.jsonl"))
                labels = await read_topic(
                    settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 130, timeout_s=120
                )
    finally:
        stop_w3.set()
        await asyncio.gather(w3, return_exceptions=True)
    requests = {r.item.id: r for r in await read_topic(settings, settings.topics.judge_topic, JudgeRequest)}
    late = {v.item_id: v for v in labels if v.item_id in second}
    assert len(late) == 60 and Counter(v.item_id for v in labels if v.item_id in second).most_common(1)[0][1] == 1
    # Criterion 1 with w1 and w2 in: they agree (accept), both abstain (disagreement), or w3 decides.
    needs_w3 = {i for i, n in second.items() if _answers(n)[0] != _answers(n)[1]}
    assert needs_w3, "some of the second batch must need w3's vote"
    for item_id, verdict in late.items():
        assert "w3" not in {v.worker for v in verdict.votes}
        if item_id in needs_w3:
            request = requests[item_id]
            waited = request.escalated_at - verdict.item_produced_at
            assert request.reason.value == "deadline" and 1.0 <= waited < 30.0, (item_id, waited)
        else:
            assert verdict.reason is None or verdict.reason.value != "deadline", item_id
    assert _waits_over("silent") - silent_before >= len(needs_w3), "the waits ended because w3 fell silent"


def _answers(n: int) -> tuple[str, str, str, str]:
    return CLEAN_PATTERNS[n % len(CLEAN_PATTERNS)][0]


def _write_second(path: Path, ids: dict[str, int]) -> None:
    with path.open("w") as out:
        for item_id, n in ids.items():
            scripted = dict(zip((*WORKERS, "judge"), _answers(n), strict=True))
            out.write(json.dumps({"id": item_id, "text": f"second {n}", "task": "sentiment3", **scripted}) + "\n")


async def test_group_watch_sees_live_members_and_their_departure(kafka_bootstrap: str) -> None:
    """The coordinator's view: w1 running owns every items partition, w2 never ran, w1 stopped owns none."""
    settings = isolated_settings(kafka_bootstrap)
    await make_topics(settings)
    watch = GroupWatch(settings, ["w1", "w2"])
    clock = iter(range(1_000, 10_000, 10))  # each refresh well past the poll interval
    try:
        async with running(worker_main(settings, "w1")):
            await _heard_from(settings, {"w1"})
            await watch.refresh(next(clock))
            assert [watch.live("w1", p) for p in range(3)] == [True, True, True]
            assert watch.live("w2", 0) is not True
        await watch.refresh(next(clock))
        assert watch.live("w1", 0) is False
    finally:
        await watch.close()
