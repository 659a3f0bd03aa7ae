"""`tribunal demo` end to end on a real broker: every tier a real OS process, the report checked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kit import REPO
from tribunal.consumers.classifiers import build_classifier
from tribunal.core.settings import load_settings
from tribunal.demo.run import load_input
from tribunal.schemas.tasks import load_tasks

DEMO_DATA = REPO / "data" / "demo" / "sentiment.jsonl"
HASH_TIERS = ["--worker", "hash:1", "--worker", "hash:2", "--worker", "hash:3", "--judge", "hash:judge"]
FIELDS = (
    "items", "throughput_items_per_s", "latency_ms", "decided_by", "worker_agreement", "judge_overrule_rate",
    "accuracy_cascade", "macro_f1_cascade", "accuracy_judge_only", "per_worker", "judge_rate", "wall_s_cascade",
    "wall_s_judge_only", "compute_s_cascade", "compute_s_judge_only", "speedup", "expected_speedup",
)  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def run_demo(
    bootstrap: str, tmp_path: Path, *args: str, timeout_s: float = 500, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `tribunal demo` as a subprocess against `bootstrap`; return its JSON report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    env["TRIBUNAL_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    env.update(env_extra or {})
    report, page = tmp_path / "report.json", tmp_path / "report.html"
    command = [sys.executable, "-m", "tribunal.cli", "demo", "--report", str(report), "--html", str(page), *args]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "<svg" in page.read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return result


def hashed_labels(spec: str, limit: int) -> dict[str, str | None]:
    """What the instant `hash:` classifier answers for the first `limit` demo items, by item id."""
    tasks = load_tasks()
    items, _ = load_input(DEMO_DATA, "sentiment", load_settings(), limit)
    predictions = asyncio.run(build_classifier(spec, tasks).classify(items))
    return {item.id: p.label for item, p in zip(items, predictions, strict=True)}


def test_demo_with_instant_classifiers_reports_exactly_what_the_votes_imply(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """hash workers on 40 demo items under Criterion 1 (named explicitly; binary task, so unanimity):
    unanimous items decided by workers, the rest by the judge, figures consistent."""
    criterion1 = {"TRIBUNAL_AGGREGATOR__POLICY": "criterion1"}
    report = run_demo(
        kafka_bootstrap, tmp_path, "--task", "sentiment", "--limit", "40", *HASH_TIERS, env_extra=criterion1
    )
    votes = [hashed_labels(f"hash:{n}", 40) for n in (1, 2, 3)]
    judge, gold = (
        hashed_labels("hash:judge", 40),
        {i.id: i.gold for i in load_input(DEMO_DATA, "sentiment", load_settings(), 40)[0]},
    )
    escalated = [i for i in gold if len({v[i] for v in votes}) > 1]
    final = {i: judge[i] if i in escalated else votes[0][i] for i in gold}

    assert report["items"] == 40 and report["quorum"] == 3 and report["policy"]["name"] == "majority"
    assert report["judge_rate"] == pytest.approx(len(escalated) / 40)
    assert report["decided_by"]["fallback"] == 0.0
    assert report["accuracy_cascade"] == pytest.approx(sum(final[i] == gold[i] for i in gold) / 40)
    assert report["accuracy_judge_only"] == pytest.approx(sum(judge[i] == gold[i] for i in gold) / 40)
    assert report["per_worker"]["w1"]["accuracy"] == pytest.approx(sum(votes[0][i] == gold[i] for i in gold) / 40)
    assert report["worker_agreement"]["final"]["judge_only"] == pytest.approx(
        sum(final[i] == judge[i] for i in gold) / 40
    )


def test_demo_with_the_task_defaults_reports_every_field_with_sane_values(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The default demo (ticket triage, `intent`) with its real default models (limit 40): every
    figure present and plausible. The defaults' heads ship in the package, so this never needs
    ../shared."""
    report = run_demo(kafka_bootstrap, tmp_path, "--limit", "40")
    assert not [name for name in FIELDS if name not in report]
    assert report["items"] == 40 and report["items_judge_only"] == 40
    assert sum(report["decided_by"].values()) == pytest.approx(1.0)
    assert 0.0 <= report["judge_rate"] <= 1.0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert report["wall_s_cascade"] > 0 and report["wall_s_judge_only"] > 0
    assert report["compute_s_judge_only"] > 0 and report["speedup"] > 0
    assert report["expected_speedup"] is not None and report["expected_speedup"] > 0
    # The demo queries are plain; chance is 1/77, every default model is far above it.
    assert report["accuracy_cascade"] >= 0.7 and report["accuracy_judge_only"] >= 0.7
    defaults = load_tasks().get("intent").workers  # what `tribunal fit` chose: two TF-IDF heads
    assert set(report["per_worker"]) == {f"w{n}" for n in range(1, len(defaults) + 1)}
    assert report["task"] == "intent"
    assert report["policy"]["name"] == "target" and report["policy"]["rule"]["reason"] == "warm start"
    assert report["judge_calls"] >= round(report["judge_rate"] * 40)
    assert all(0.5 <= w["agreement_with_final"] <= 1.0 for w in report["per_worker"].values())
