"""`bench pipeline` on a real broker, small: every tier as its own process, each item labelled
exactly once, and the figures it prints present and sane (it measures; it asserts no speed)."""

from __future__ import annotations

from tests.integration.kit import isolated_settings
from tribunal.bench.pipeline import bench_pipeline

ITEMS, PACED = 400, 200


async def test_bench_pipeline_labels_every_item_once_and_reports_its_costs(kafka_bootstrap: str) -> None:
    # Criterion 1: the fast path (the default target policy sends a cold start to the judge).
    settings = isolated_settings(kafka_bootstrap, aggregator={"policy": "criterion1"})

    report = await bench_pipeline(settings, ITEMS, 3, [200.0], PACED)

    assert (report["labelled"], report["duplicates"], report["missing"]) == (ITEMS, 0, 0)
    assert set(report["cpu_us_per_item"]) == {"w1", "w2", "w3", "aggregator", "judge"}
    assert "bench" in report["cpu_us_per_item_beside"]
    assert report["machine_busy_share"] is None or 0.0 <= report["machine_busy_share"] <= 1.0
    [paced] = report["paced"]
    assert (paced["labelled"], paced["rate_items_per_s"]) == (PACED, 200.0)
    assert set(paced["cpu_us_per_item"]) == set(report["cpu_us_per_item"])
    assert report["transaction_baseline"]["per_s"] > 0 and report["transaction_baseline"]["client_cpu_ms"] > 0
    assert report["broker_records_per_item"] > 1, "an item and its label at least"
