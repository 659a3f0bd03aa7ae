"""examples/ticket-triage as a user runs it: another system's Avro tickets (written by the
example's own librdkafka producer) mapped by the example's pipeline.toml, classified by the real
fitted intent models, and written back enriched to the sink, each ticket once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

from tests.integration.connect_kit import read_sink
from tests.integration.kit import REPO, TierMain, running
from tests.integration.pipeline_kit import aggregator_main, judge_main, worker_main
from tests.integration.test_sources_exactly_once import avro_decisions
from tribunal.cli.source import check
from tribunal.consumers import intake, sink
from tribunal.core.settings import Settings, load_settings
from tribunal.core.topics import create_topics

EXAMPLE = REPO / "examples" / "ticket-triage"
COUNT = 300


def example_settings(bootstrap: str, registry: str, topic: str, out: str) -> Settings:
    base = load_settings(EXAMPLE / "pipeline.toml")
    source = base.source[0].model_copy(update={"topic": topic})
    target = base.sink[0].model_copy(update={"topic": out})
    return load_settings(
        EXAMPLE / "pipeline.toml",
        kafka={"bootstrap_servers": bootstrap},
        registry={"url": registry},
        topics={"prefix": f"t{uuid.uuid4().hex[:8]}-", "partitions": 3, "labels_partitions": 2},
        runtime={"batch_wait_ms": 20, "instance_id": "example"},
        source=[source.model_dump()],
        sink=[target.model_dump()],
    )


def tiers(settings: Settings) -> list[TierMain]:
    mains = [worker_main(settings, w.name, w.classifier) for w in settings.pipeline.workers]
    mains += [aggregator_main(settings), judge_main(settings, settings.judge.classifier)]
    mains.append(lambda stop: intake.serve_intake(settings, "tickets", stop=stop))
    mains.append(lambda stop: sink.serve_sink(settings, "triaged", stop=stop))
    return mains


async def test_the_ticket_triage_example_enriches_every_ticket_once(
    kafka_bootstrap: str, schema_registry_url: str
) -> None:
    topic, out = f"support-tickets-{uuid.uuid4().hex[:8]}", f"triaged-{uuid.uuid4().hex[:8]}"
    settings = example_settings(kafka_bootstrap, schema_registry_url, topic, out)
    command = [sys.executable, str(EXAMPLE / "produce_tickets.py"), "--count", str(COUNT), "--topic", topic,
               "--bootstrap", kafka_bootstrap, "--registry", schema_registry_url]  # fmt: skip
    produced = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert produced.returncode == 0, produced.stderr[-2000:]
    await create_topics(settings)

    peek = await check(settings, "tickets", limit=5)
    assert peek["mapped"] == 5, peek
    first: dict[str, Any] = peek["records"][0]
    assert first["task"] == "intent" and "customer.tier" in first["metadata"] and "header.tenant" in first["metadata"]

    async with running(*tiers(settings)):
        records = await read_sink(settings, out, COUNT, timeout_s=300)
    assert len(Counter(r.key for r in records)) == COUNT, "each ticket once, under its own key"
    decisions = await avro_decisions(schema_registry_url, out, records, field="triage")
    labels = set(settings.tasks().get("intent").labels)
    assert all(d["label"] in labels for d in decisions.values())
    by = Counter(d["decided_by"] for d in decisions.values())
    assert by["workers"] > 0 and by["judge"] > 0, by
    assert {d["item_id"] for d in decisions.values()} == {f"HD-{n:06d}" for n in range(COUNT)}
