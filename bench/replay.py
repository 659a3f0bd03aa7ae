"""`tribunal bench replay`: `tribunal replay votes` over a recorded pipeline of N items, measured.

Writes a synthetic recorded pipeline under a fresh prefix: N items, the workers' votes as the
worker tier writes them (one `VoteBatch` per 250 items and partition, with positions) and one
verdict per item (the majority when two of three agree, else a judge verdict), then runs `tribunal
replay votes --policy confident_majority` on it as a child process and reports items/s and the child's
peak RSS. The topics are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
import time
import uuid
from typing import Any

import orjson

from tribunal.core import kafka
from tribunal.core.settings import Settings, settings_env
from tribunal.core.topics import create_topics, delete_topics
from tribunal.schemas.codec import encode, key
from tribunal.schemas.messages import SCHEMA_VERSION, Item

__all__ = ["bench_replay"]

LABELS = ("negative", "neutral", "positive")
WORKERS = ("w1", "w2", "w3")
ROWS = 250


def _verdict(item: Item, answers: list[str]) -> bytes:
    votes = [
        {"schema_version": SCHEMA_VERSION, "item_id": item.id, "worker": w, "model": f"hash:{w}", "task": item.task,
         "label": a, "confidence": 0.9, "latency_ms": 0.1, "reason": None, "voted_at": item.produced_at}
        for w, a in zip(WORKERS, answers, strict=True)
    ]  # fmt: skip
    majority = next((a for a in answers if answers.count(a) >= 2), None)
    by, reason = ("workers", None) if majority else ("judge", "disagreement")
    return orjson.dumps(
        {"schema_version": SCHEMA_VERSION, "item_id": item.id, "task": item.task, "label": majority or answers[0],
         "decided_by": by, "confidence": 0.9, "votes": votes, "reason": reason, "policy": "majority",
         "policy_version": 1, "gold": None, "item_produced_at": item.produced_at,
         "decided_at": item.produced_at + 0.1, "judge_latency_ms": None if majority else 10.0}
    )  # fmt: skip


async def record_log(settings: Settings, count: int) -> None:
    """Write the synthetic recorded pipeline (module docstring) into `settings`' topics."""
    t = settings.topics
    producer = kafka.idempotent_producer(settings.kafka, max_request_size=settings.max_message_bytes + 65_536)
    await producer.start()
    rows: dict[int, dict[str, list[Any]]] = {p: {w: [] for w in WORKERS} for p in range(t.partitions)}
    offsets = dict.fromkeys(range(t.partitions), 0)
    chance = random.Random(7)
    try:
        for n in range(count):
            item = Item(id=f"rec-{n}", text=f"recorded message {n}", task="sentiment3", produced_at=1e9 + n / 1000)
            partition = kafka.partition_for(key(item.id), list(range(t.partitions)))
            await producer.send(t.items_topic, encode(item), key=key(item.id), partition=partition)
            answers = [chance.choice(LABELS) for _ in WORKERS]
            await producer.send(t.labels_topic, _verdict(item, answers), key=key(item.id))
            offsets[partition] += 1
            for worker, answer in zip(WORKERS, answers, strict=True):
                rows[partition][worker].append((item.id, item.task, answer, 0.9, 0.1, None))
            if len(rows[partition][WORKERS[0]]) == ROWS or n == count - 1:
                await _flush_votes(producer, settings, partition, rows[partition], offsets[partition])
        for partition, pending in rows.items():
            await _flush_votes(producer, settings, partition, pending, offsets[partition])
        await producer.flush()
    finally:
        await producer.stop()


async def _flush_votes(producer: Any, settings: Settings, partition: int, rows: dict[str, list[Any]], at: int) -> None:
    for worker in WORKERS:
        if rows[worker]:
            value = {"schema_version": SCHEMA_VERSION, "worker": worker, "model": f"hash:{worker}",
                     "next_offset": at, "votes": rows[worker], "voted_at": 1e9}  # fmt: skip
            await producer.send(
                settings.topics.votes_topic, orjson.dumps(value), key=worker.encode(), partition=partition
            )
            rows[worker] = []


async def _replay(settings: Settings, run: str) -> tuple[dict[str, Any], float, int]:
    """Run `tribunal replay votes` as a child; its report, seconds, and peak RSS in bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env.update(settings_env(settings))
    args = ("replay", "votes", "--policy", "confident_majority", "--threshold", "0.8", "--run", run,
            "--source-prefix", settings.topics.prefix, "--json")  # fmt: skip
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tribunal.cli", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"tribunal replay votes exited with {child.returncode}")
    # ru_maxrss of reaped children: the largest peak among them, in KiB on Linux.
    return orjson.loads(out), seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


async def bench_replay(settings: Settings, count: int) -> dict[str, Any]:
    """Record `count` items, replay them, report; delete the topics."""
    prefix = f"benchreplay-{uuid.uuid4().hex[:8]}-"
    source = settings.model_copy(update={"topics": settings.topics.model_copy(update={"prefix": prefix})})
    await create_topics(source)
    run = f"r{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        await record_log(source, count)
        recorded_s = time.perf_counter() - started
        report, seconds, peak = await _replay(source, run)
    finally:
        target = source.model_copy(update={"topics": source.topics.model_copy(update={"prefix": f"{run}-"})})
        await delete_topics([source, target])
    return {
        "items": count,
        "replayed": report["items"],
        "escalated": report["escalated"],
        "judge_requests": report["judge_requests"],
        "seconds": round(seconds, 2),
        "items_per_s": round(report["items"] / seconds, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "record_seconds": round(recorded_s, 1),
    }
