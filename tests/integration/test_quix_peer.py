"""The Quix Streams peer of `bench peers` on a real broker: every item gets exactly one label,
some through its judge, and the run leaves none of its topics (changelogs included) behind.

The peer lives in its own venv (`make bench-peers`), which CI does not install: without it this
test skips, saying so."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.kit import isolated_settings
from tribunal.bench.peers.run import DEFAULT_PEER_PYTHON, WARMUP_ITEMS, PeerOptions, run_system
from tribunal.core.topics import list_topics

pytestmark = pytest.mark.skipif(
    not DEFAULT_PEER_PYTHON.exists(),
    reason=f"no {DEFAULT_PEER_PYTHON}: the Quix peer is installed only by `make bench-peers`",
)

ITEMS = 300


async def test_the_quix_peer_labels_every_item_exactly_once_and_cleans_up(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap)
    # Four labels for three workers: about a third of the items find no two agreeing votes and
    # go through the peer's judge, so both of its paths to `labels` are exercised.
    options = PeerOptions(items=ITEMS, rates=(200.0,), rate_items=100, labels=("a", "b", "c", "d"))

    result = await run_system(settings, "quix", options)

    assert result["produced"] == WARMUP_ITEMS + ITEMS + 100
    assert (result["duplicates"], result["missing"]) == (0, 0)
    assert 0.1 < result["saturated"]["judge_share"] < 0.7
    assert result["broker_records_per_item"] > 4, "an item, three votes and a label at least"
    assert set(result["cpu_us_per_item"]) == {"w1", "w2", "w3", "aggregator", "judge", "total"}
    assert await _leftovers(kafka_bootstrap, result["prefix"]) == []


async def _leftovers(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> list[str]:
    """The run's topics still listed once deletions reached the metadata (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = await list_topics(isolated_settings(bootstrap), everything=True)
        left = [str(t["name"]) for t in listed if prefix in str(t["name"])]
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.2)
