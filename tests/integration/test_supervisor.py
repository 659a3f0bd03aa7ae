"""`tribunal run` on a real broker: every child serves its own `/metrics`, and all of them answer."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.kit import REPO, child_env, isolated_settings, make_topics, read_topic
from tests.integration.pipeline_kit import write_scripted_items
from tribunal.producers.ingest import ingest
from tribunal.schemas.messages import Verdict

pytestmark = [pytest.mark.slow, pytest.mark.broker]
CHILDREN = {0: "worker", 1: "worker", 2: "worker", 3: "aggregator", 4: "judge"}  # the default pipeline's order


def _free_run(length: int) -> int:
    """The first port of `length` consecutive ports that are free now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + length > 65535:
            continue
        held = []
        try:
            for port in range(base, base + length):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {length} consecutive free ports found")


async def _scrape(port: int, wanted: str, timeout_s: float = 120.0, path: str = "/metrics") -> str:
    """The text at `path` on `port` once it contains `wanted` (a child starts, then counts)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(f"http://127.0.0.1:{port}{path}")
                last = response.text
                if response.status_code == 200 and wanted in last:
                    return last
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.3)
    raise AssertionError(f"port {port}: {wanted!r} not served within {timeout_s}s; last scrape:\n{last[-1500:]}")


async def test_run_serves_metrics_of_every_child_on_its_own_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Default pipeline (3 hash workers, aggregator, judge) with metrics_port=B and health_port=H:
    child i answers on B+i with its own tier's counters and is ready on H+i, items flow end to end,
    and SIGTERM stops it with status 0."""
    # Audit every agreed item, so the judge has records to count even when the workers agree.
    settings = isolated_settings(kafka_bootstrap, aggregator={"policy": "criterion1", "audit_rate": 1.0})
    await make_topics(settings)
    write_scripted_items(tmp_path / "items.jsonl", 30)
    assert (await ingest(settings, str(tmp_path / "items.jsonl"))).published == 30
    base = _free_run(2 * len(CHILDREN))
    health = base + len(CHILDREN)
    env = child_env(settings, "supervisor") | {
        "TRIBUNAL_METRICS_PORT": str(base),
        "TRIBUNAL_HEALTH_PORT": str(health),
        "TRIBUNAL_LOG_LEVEL": "info",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tribunal.cli", "run", env=env, cwd=REPO, stdout=log_file, stderr=log_file
        )
    try:
        # Five interpreters start and join their groups first: generous on a loaded machine.
        reading = asyncio.create_task(
            read_topic(settings, settings.topics.labels_topic, Verdict, until=lambda rs: len(rs) >= 30, timeout_s=240)
        )
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({reading, exited}, return_when=asyncio.FIRST_COMPLETED)
        assert not exited.done(), f"tribunal run exited with status {process.returncode}"
        exited.cancel()
        assert len({v.item_id for v in await reading}) == 30
        for index, tier in CHILDREN.items():
            text = await _scrape(base + index, f'tribunal_records_in_total{{tier="{tier}"')
            others = set(CHILDREN.values()) - {tier}
            assert not any(f'records_in_total{{tier="{t}"' in text for t in others), f"port {base + index} mixes tiers"
            assert '"ready":true' in await _scrape(health + index, '"ready":true', path="/readyz")
    except BaseException:
        print(log_path.read_text(encoding="utf-8", errors="replace")[-4000:])  # the children's story
        raise
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == 0, log[-3000:]
    for index in CHILDREN:
        assert f"127.0.0.1:{base + index}/metrics" in log, "every child's metrics URL is listed at start"
