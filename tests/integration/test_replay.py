"""`tribunal replay` on a real broker: re-deciding a recorded pipeline's votes with no worker
running, and copying offset and time ranges of the items topic into a namespaced run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.integration.kit import REPO, isolated_settings, make_topics, read_topic, running
from tests.integration.pipeline_kit import CLEAN_PATTERNS, WORKERS, aggregator_main, judge_main, worker_main
from tribunal.core.settings import Settings
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import DecidedBy, Item, JudgeRequest, Verdict

# w2 is never confident enough for Criterion 2 at 0.8, so only w1 and w3 can form its quorum.
CONFIDENCE = {"w1": 0.95, "w2": 0.6, "w3": 0.85}
THRESHOLD = 0.8
ITEMS = 70


async def tribunal(bootstrap: str, *args: str) -> dict[str, Any]:
    """Run `tribunal <args> --json` in a child process (broker from env only); its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env["TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tribunal.cli", *args, "--json", env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def write_items(path: Path, count: int, start: int = 0) -> dict[str, dict[str, str]]:
    """Scripted items (CLEAN_PATTERNS); return each id's scripted answers by worker and judge."""
    answers: dict[str, dict[str, str]] = {}
    with path.open("w") as out:
        for n in range(start, start + count):
            scripted = dict(zip((*WORKERS, "judge"), CLEAN_PATTERNS[n % len(CLEAN_PATTERNS)][0], strict=True))
            answers[f"item-{n:06d}"] = scripted
            out.write(json.dumps({"id": f"item-{n:06d}", "text": f"text {n}", "task": "sentiment3", **scripted}) + "\n")
    return answers


async def record_pipeline(settings: Settings, tmp_path: Path) -> dict[str, dict[str, str]]:
    """Run 3 scripted workers (confidences above), the aggregator (Criterion 1, half the accepted
    items audited) and the judge until every item has a label; then stop them all."""
    await make_topics(settings)
    answers = write_items(tmp_path / "items.jsonl", ITEMS)
    assert (await ingest(settings, str(tmp_path / "items.jsonl"))).published == ITEMS
    workers = [worker_main(settings, w, f"scripted:{w}?confidence={c}") for w, c in CONFIDENCE.items()]
    async with running(*workers, aggregator_main(settings), judge_main(settings)):
        await read_topic(settings, settings.topics.labels_topic, until=lambda rs: len(rs) >= ITEMS, timeout_s=120)
    return answers


def criterion2_accepts(scripted: dict[str, str]) -> str | None:
    """What Criterion 2 at THRESHOLD implies here: accept iff the two confident workers agree."""
    w1, w3 = scripted["w1"], scripted["w3"]
    return w1 if w1 == w3 and not w1.startswith("!") else None


async def test_replay_votes_redecides_the_log_without_workers(kafka_bootstrap: str, tmp_path: Path) -> None:
    """criterion2 at 0.8 over a criterion1 log: the report and RUN- topics match the policy's rule."""
    source = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1", "deadline_ms": 120_000, "audit_rate": 0.5}
    )
    answers = await record_pipeline(source, tmp_path)
    original = {v.item_id: v for v in await read_topic(source, source.topics.labels_topic, Verdict)}
    audited = {v.item_id: v.label for v in await read_topic(source, source.topics.audits_topic, Verdict)}
    assert len(original) == ITEMS and audited, "the source run must have labels and some audits"

    run = f"r{uuid.uuid4().hex[:8]}"
    report = await tribunal(
        kafka_bootstrap, "replay", "votes", "--policy", "criterion2", "--threshold", str(THRESHOLD),
        "--run", run, "--source-prefix", source.topics.prefix,
    )  # fmt: skip

    escalated = {i for i, a in answers.items() if criterion2_accepts(a) is None}
    judged = {i for i in escalated if original[i].decided_by == DecidedBy.JUDGE or i in audited}
    new_label = {i: criterion2_accepts(a) for i, a in answers.items() if i not in escalated}
    new_label |= {i: audited.get(i, original[i].label) for i in judged}
    changed = {i for i, label in new_label.items() if label != original[i].label}
    assert changed, "audits of low-confidence items must make some labels change"
    assert (report["items"], report["escalated"], report["changed"]) == (ITEMS, len(escalated), len(changed))
    assert report["judge_requests"] == len(escalated - judged)
    assert report["source_judge_rate"] == sum(v.decided_by != DecidedBy.WORKERS for v in original.values()) / ITEMS
    assert report["new_judge_rate"] == len(escalated) / ITEMS
    by_class = Counter(original[i].label for i in answers)
    assert report["by_class"] == {
        label: {"items": by_class[label], "changed": sum(original[i].label == label for i in changed)}
        for label in sorted(by_class)
    }

    target = isolated_settings(kafka_bootstrap, topics={"prefix": f"{run}-"})
    labels = await read_topic(target, target.topics.labels_topic, Verdict)
    requests = await read_topic(target, target.topics.judge_topic, JudgeRequest)
    assert {v.item_id: v.label for v in labels} == new_label
    assert all(v.policy == "confident_majority" for v in labels)
    assert sorted(r.item.id for r in requests) == sorted(escalated - judged)
    assert len(await read_topic(source, source.topics.labels_topic)) == ITEMS, "the source is only read"


async def test_replay_items_copies_exactly_an_offset_range(kafka_bootstrap: str, tmp_path: Path) -> None:
    """--from-offset 2 --to-offset 7: offsets 2..6 of each partition land in RUN-items, same keys."""
    source = isolated_settings(kafka_bootstrap)
    await make_topics(source)
    write_items(tmp_path / "items.jsonl", 40)
    await ingest(source, str(tmp_path / "items.jsonl"))
    records = await read_topic(source, source.topics.items_topic)
    wanted = {(r.partition, r.key) for r in records if 2 <= r.offset < 7}

    run = f"r{uuid.uuid4().hex[:8]}"
    report = await tribunal(
        kafka_bootstrap, "replay", "items", "--from-offset", "2", "--to-offset", "7",
        "--run", run, "--source-prefix", source.topics.prefix,
    )  # fmt: skip

    assert report["published"] == len(wanted) == 5 * source.topics.partitions
    copied = await read_topic(isolated_settings(kafka_bootstrap, topics={"prefix": f"{run}-"}), f"{run}-items")
    assert sorted((r.partition, r.key) for r in copied) == sorted(wanted)
    assert {Item.model_validate_json(r.value).id for r in copied} == {k.decode() for _, k in wanted}


async def test_replay_items_copies_a_time_range(kafka_bootstrap: str, tmp_path: Path) -> None:
    """--from T: only the items produced at or after T are copied (offsets_for_times)."""
    source = isolated_settings(kafka_bootstrap)
    await make_topics(source)
    write_items(tmp_path / "early.jsonl", 20)
    await ingest(source, str(tmp_path / "early.jsonl"))
    # Reading them back takes far more than the 1 ms between this bound and the late items.
    since_ms = max(r.timestamp for r in await read_topic(source, source.topics.items_topic)) + 1
    later = write_items(tmp_path / "late.jsonl", 15, start=100)
    await ingest(source, str(tmp_path / "late.jsonl"))

    run = f"r{uuid.uuid4().hex[:8]}"
    moment = datetime.fromtimestamp(since_ms // 1000, UTC).replace(microsecond=since_ms % 1000 * 1000)
    stamp = moment.isoformat().replace("+00:00", "Z")
    report = await tribunal(
        kafka_bootstrap, "replay", "items", "--from", stamp, "--run", run, "--source-prefix", source.topics.prefix
    )
    copied = await read_topic(isolated_settings(kafka_bootstrap), f"{run}-items")
    assert report["published"] == len(copied) == len(later)
    assert {r.key.decode() for r in copied} == set(later)
