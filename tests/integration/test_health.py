"""The health endpoint against a real broker: a tier becomes ready once its consumer joined the
group and its partitions (possibly none) are assigned and restored; /readyz says so over HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from tests.integration.kit import isolated_settings, make_topics
from tribunal.consumers import worker
from tribunal.consumers.classifiers import build_classifier
from tribunal.core.health import HealthServer
from tribunal.core.runtime import StreamRunner
from tribunal.core.settings import Settings

pytestmark = pytest.mark.broker


def _runner(settings: Settings, instance: str) -> StreamRunner:
    named = settings.model_copy(update={"runtime": settings.runtime.model_copy(update={"instance_id": instance})})
    tasks = named.tasks()
    processor = worker.WorkerProcessor(named, build_classifier("hash:1", tasks), tasks)
    return StreamRunner(named, processor, group_id=worker.group_id(named), decode_context=named.decode_context(tasks))


async def _settled(runners: list[StreamRunner], timeout_s: float = 60.0) -> None:
    """Wait until every runner is ready and together they own the topic's one partition (a
    rebalance after the second join may hand it over; probes would poll the same way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(r.health.ready() for r in runners) and sum(r.health.partitions for r in runners) == 1:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"not settled within {timeout_s}s: {[r.health.report() for r in runners]}")


async def test_ready_after_assignment_and_standby_ready_too(kafka_bootstrap: str) -> None:
    """With one partition and two replicas, both become ready: one owns the partition, the
    other is an idle standby with none. After stop, neither is live."""
    settings = isolated_settings(kafka_bootstrap, topics={"partitions": 1})
    await make_topics(settings)
    runners = [_runner(settings, "a"), _runner(settings, "b")]
    servers = [HealthServer(r.health, port=0, host="127.0.0.1") for r in runners]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        assert all(not r.health.ready() for r in runners)
        await _settled(runners)
        async with httpx.AsyncClient() as client:
            answers = [await client.get(f"http://127.0.0.1:{s.port}/readyz") for s in servers]
        assert [a.status_code for a in answers] == [200, 200]
        assert sorted(orjson.loads(a.content)["partitions"] for a in answers) == [0, 1]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for server in servers:
            server.close()
    assert all(not r.health.live() for r in runners)
