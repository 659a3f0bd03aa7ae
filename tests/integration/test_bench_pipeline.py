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


async def test_bench_pipeline_with_an_avro_source_measures_both_side_by_side(
    kafka_bootstrap: str, schema_registry_url: str
) -> None:
    """`--source avro`: the plain run and the run through intake and sink, each item once in
    both, the intake's and the sink's CPU per record reported."""
    settings = isolated_settings(
        kafka_bootstrap, aggregator={"policy": "criterion1"}, registry={"url": schema_registry_url}
    )

    report = await bench_pipeline(settings, ITEMS, 3, [200.0], 0, source="avro")

    sourced = report["source_avro"]
    for run in (report["plain"], sourced):
        assert (run["labelled"], run["duplicates"], run["missing"]) == (ITEMS, 0, 0)
    assert set(sourced["cpu_us_per_item"]) == {"w1", "w2", "w3", "aggregator", "judge", "intake", "sink"}
    assert report["intake_cpu_us_per_record"] > 0 and report["sink_cpu_us_per_record"] > 0
    assert report["source_vs_plain_throughput"] > 0
    assert sourced["judge_share"] < 1.0, "outcomes read from the enriched Avro records"
