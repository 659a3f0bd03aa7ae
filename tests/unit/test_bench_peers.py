"""`bench peers`' pure parts: the Quix peer's per-record logic (bench/peers/quix/tally.py, loaded
from its file: the peer is no package of the product), which run's topics get deleted, the
exactly-once accounting and the side-by-side table."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.modules import load_module
from tribunal.bench.peers.run import PEER_APP, run_topics, table
from tribunal.bench.probes import exactly_once
from tribunal.consumers.classifiers.registry import build_classifier
from tribunal.schemas.messages import Item
from tribunal.schemas.tasks import load_tasks

TALLY = PEER_APP.parent / "tally.py"


@pytest.fixture(scope="module")
def tally() -> ModuleType:
    return load_module("peer_tally", TALLY)


def test_the_peer_app_and_its_logic_are_where_the_bench_starts_them() -> None:
    assert PEER_APP.is_file() and TALLY.is_file()
    requirements = (PEER_APP.parent / "requirements.txt").read_text(encoding="utf-8")
    assert "quixstreams==3." in requirements


def test_peer_hash_votes_are_tribunals_hash_classifier_votes(tally: ModuleType) -> None:
    """Same per-vote work and same answers: the peer's hash is Tribunal's `hash:SEED`."""
    tasks = load_tasks()
    labels = tasks.get("sentiment").labels
    texts = [f"benchmark message number {n} about a parcel" for n in range(200)]
    for seed in ("w1", "w2", "w3", "judge"):
        classifier = build_classifier(f"hash:{seed}", tasks)
        items = [Item(id=str(n), text=text) for n, text in enumerate(texts)]
        ours = [p.label for p in asyncio.run(classifier.classify(items))]
        assert [tally.hash_label(seed, text, list(labels)) for text in texts] == ours


def _vote(worker: str, label: str) -> dict[str, Any]:
    return {"item_id": "i1", "worker": worker, "label": label}


ITEM = {"id": "i1", "text": "some text", "task": "sentiment"}


def test_two_agreeing_votes_decide_once_the_item_is_in(tally: ModuleType) -> None:
    state, out = tally.step(None, _vote("w1", "positive"), 3, 2)
    assert out is None
    state, out = tally.step(state, _vote("w2", "positive"), 3, 2)
    assert out is None, "no label before the item is joined"
    state, out = tally.step(state, ITEM, 3, 2)
    assert out == {"route": "labels", "value": {"item_id": "i1", "label": "positive", "decided_by": "workers"}}
    state, out = tally.step(state, _vote("w3", "negative"), 3, 2)
    assert out is None and state is None, "decided once; the key is forgotten when every vote is in"


def test_no_quorum_among_all_votes_escalates_to_the_judge_once(tally: ModuleType) -> None:
    state, out = tally.step(None, ITEM, 3, 2)
    for worker, label in (("w1", "a"), ("w2", "b")):
        state, out = tally.step(state, _vote(worker, label), 3, 2)
        assert out is None
    state, out = tally.step(state, _vote("w3", "c"), 3, 2)
    assert out == {"route": "judge", "value": {"item": ITEM, "votes": {"w1": "a", "w2": "b", "w3": "c"}}}
    assert state is None
    verdict = tally.verdict(out["value"], ["a", "b", "c"])
    assert verdict["item_id"] == "i1" and verdict["decided_by"] == "judge" and verdict["label"] in "abc"


def test_a_run_deletes_its_own_topics_and_quix_internal_ones_only() -> None:
    prefix = "qpeer-1a2b3c4d-"
    existing = [
        f"{prefix}items",
        f"{prefix}labels",
        f"changelog__{prefix}aggregator--{prefix}items--default",
        "qpeer-ffffffff-items",
        "items",
        "__consumer_offsets",
    ]
    assert run_topics(existing, prefix) == sorted(existing[:3])


def test_exactly_once_counts_duplicates_and_missing_over_the_given_ids() -> None:
    seen = Counter({"a": 1, "b": 2, "x": 5})
    assert exactly_once(seen, ["a", "b", "c"]) == {"duplicates": 1, "missing": 1}


def _run(system: str, rounds: int, throughput: float) -> dict[str, Any]:
    figures = {"throughput_items_per_s": throughput, "latency_ms": {"p50": 1.0, "p95": 2.5, "p99": 3.0}}
    return {
        "system": system,
        "round": rounds,
        "saturated": {**figures, "judge_share": 0.0},
        "paced": [{**figures, "rate": 1000.0}],
        "cpu_us_per_item": {"w1": 10.0, "aggregator": 20.0, "total": 30.0},
        "broker_records_per_item": 2.5,
        "produced": 10,
        "duplicates": 0,
        "missing": 1,
    }


def test_the_table_puts_runs_side_by_side_in_the_order_they_ran() -> None:
    lines = table([_run("tribunal", 1, 2000.0), _run("quix", 1, 500.0)]).splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["tribunal #1", "quix #1"]
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in lines[1:])}
    assert rows["saturation items/s"] == ["2000", "500"]
    assert rows["1000/s p50/p95/p99 ms"] == ["1 / 2.5 / 3", "1 / 2.5 / 3"]
    assert rows["CPU µs/item aggregator"] == ["20.0", "20.0"]
    assert rows["labelled / produced"] == ["9 / 10", "9 / 10"]
    assert list(rows)[-3:] == ["labelled / produced", "duplicates", "missing"]


def test_the_peer_is_no_dependency_of_the_product() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert "quixstreams" not in pyproject
