"""Workers that learn from the judge, on a real broker: `tribunal train --from-labels` reads the
judge's labels (labels + audits topics) and the texts (judge topic), publishes a head version,
and a running worker picks up each new version at a batch boundary, without a restart, naming
it on its votes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.kit import REPO, child_env, isolated_settings, make_topics, read_votes, running
from tests.integration.pipeline_kit import worker_main
from tribunal.core.settings import Settings
from tribunal.producers.ingest import ingest
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import DecidedBy, EscalationReason, Item, JudgeRequest, Verdict

pytest.importorskip("sklearn")

TASK = "sentiment3"
WORDS = {
    "positive": ["great", "lovely", "superb", "wonderful"],
    "negative": ["awful", "dreadful", "terrible", "horrible"],
    "neutral": ["scheduled", "located", "announced", "listed"],
}


def _text(label: str, n: int) -> str:
    return f"the show was {WORDS[label][n % 4]} number {n}"


async def _publish_judged(settings: Settings, start: int, count: int) -> None:
    """`count` judged items: a JudgeRequest (the text) each, and the judge's verdict on `labels`
    (escalations) or on `audits` (every third); plus worker-decided labels, which must be ignored."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    t = settings.topics
    try:
        for n in range(start, start + count):
            label = list(WORDS)[n % 3]
            item = Item(id=f"judged-{n}", text=_text(label, n), task=TASK)
            audit = n % 3 == 0
            reason = EscalationReason.AUDIT if audit else EscalationReason.DISAGREEMENT
            request = JudgeRequest(item=item, reason=reason, policy="target", policy_version=1)
            verdict = Verdict(item_id=item.id, task=TASK, label=label, decided_by=DecidedBy.JUDGE, policy="target",
                              policy_version=1, item_produced_at=1.0, reason=reason)  # fmt: skip
            await producer.send_and_wait(t.judge_topic, encode(request), key=key(item.id))
            await producer.send_and_wait(t.audits_topic if audit else t.labels_topic, encode(verdict), key=key(item.id))
            wrong = Verdict(item_id=f"workers-{n}", task=TASK, label="neutral", decided_by=DecidedBy.WORKERS,
                            policy="target", policy_version=1, item_produced_at=1.0)  # fmt: skip
            await producer.send_and_wait(t.labels_topic, encode(wrong), key=key(wrong.item_id))
    finally:
        await producer.stop()


async def _train(settings: Settings, store: Path, *extra: str) -> dict[str, Any]:
    """`tribunal train --from-labels` as a child process, with the test's settings."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tribunal.cli", "train", "--from-labels", "--task", TASK, "--store", str(store),
        "--first", "30", "--every", "30", *extra, "--json",
        env=child_env(settings, "trainer"), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def _ingest(settings: Settings, path: Path, start: int, count: int) -> None:
    with path.open("w") as handle:
        for n in range(start, start + count):
            label = ("positive", "negative")[n % 2]
            handle.write(json.dumps({"id": f"new-{n}", "text": _text(label, n + 1000), "task": TASK}) + "\n")
    assert (await ingest(settings, str(path), task=TASK)).published == count


async def test_train_from_labels_and_a_running_worker_swaps_versions(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap)
    await make_topics(settings)
    store = tmp_path / "learned"
    await _publish_judged(settings, 0, 20)
    early = await _train(settings, store)
    assert early["published"] is False and early["judge_labels"] == 20
    assert early["skipped"] == {"decided_by_workers": 20}
    await _publish_judged(settings, 20, 25)
    first = await _train(settings, store)
    assert first["published"] and first["version"] == 1 and first["judge_labels"] == 45
    assert first["labels_seen"] == ["negative", "neutral", "positive"]

    spec = f"learned:{store}?task={TASK}&poll_s=0"
    async with running(worker_main(settings, "w4", spec)):
        await _ingest(settings, tmp_path / "a.jsonl", 0, 10)
        votes = await read_votes(settings, 10, timeout_s=90)
        assert {v.model for v in votes} == {"tfidf:learned/sentiment3@v1"}
        assert [v.label for v in sorted(votes, key=lambda v: int(v.item_id.split("-")[1]))] == [
            "positive", "negative"
        ] * 5  # fmt: skip
        await _publish_judged(settings, 45, 30)
        second = await _train(settings, store)
        assert second["published"] and second["version"] == 2 and second["previous_rows"] == 45
        await _ingest(settings, tmp_path / "b.jsonl", 10, 10)
        votes = await read_votes(settings, 20, timeout_s=90)
    later = [v for v in votes if int(v.item_id.split("-")[1]) >= 10]
    assert {v.model for v in later} == {"tfidf:learned/sentiment3@v2"} and len(later) == 10
    assert all(v.worker == "w4" and v.label in ("positive", "negative") for v in later)
