"""The monitoring files, checked without Docker: the Grafana dashboard and the alert rules against
the metrics that tribunal/core/metrics.py defines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.deploy_kit import (
    ALERTS_FILE,
    EXTERNAL_METRICS,
    ROOT,
    exported_families,
    exported_series,
    known_metric,
    load_yaml,
    promql_metrics,
)

ALERTS = (
    "TribunalConsumerLagGrowing",
    "TribunalDeadLetterRate",
    "TribunalAuditPrecisionBelowTarget",
    "TribunalJudgeBacklogAtBudget",
    "TribunalTierRestarting",
    "TribunalCalibrationUnreadable",
    "TribunalSchemaRegistryDown",
)
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "tribunal-dashboard.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws data (rows are layout only), including panels nested in rows."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target.get("expr", "") for panel in _panels(dashboard) for target in panel.get("targets", [])]


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    """The dashboard has a title, uid, schema version and panels with unique ids inside a 24-column grid."""
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_queries_a_metric(dashboard: dict[str, Any]) -> None:
    """Each data panel has PromQL targets, and each target selects at least one metric."""
    for panel in _panels(dashboard):
        exprs = [target.get("expr", "") for target in panel.get("targets", [])]
        assert exprs, panel["title"]
        assert all(promql_metrics(expr) for expr in exprs), panel["title"]


def test_dashboard_metrics_exist(dashboard: dict[str, Any]) -> None:
    """Every panel query parses as PromQL and every metric it selects exists: exported by this
    process (tribunal/core/metrics.py, prometheus_client's collectors) or listed with its source."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            unknown = {m for m in promql_metrics(target["expr"]) if not known_metric(m)}
            assert not unknown, f"{panel['title']}: {unknown}"


def test_metric_check_rejects_a_renamed_metric() -> None:
    """The metric check fails on a name nobody exports (the old unsuffixed ratio, say)."""
    assert not known_metric("tribunal_fast_path_precision")
    assert promql_metrics("max by (task) (tribunal_fast_path_precision)") == {"tribunal_fast_path_precision"}


def test_dashboard_covers_every_metric(dashboard: dict[str, Any]) -> None:
    """Each metric tribunal/core/metrics.py defines appears in at least one panel."""
    used = " ".join(_expressions(dashboard))
    missing = {family for family in exported_families() if family not in used}
    assert not missing


def test_dashboard_has_judge_rate_and_quantiles(dashboard: dict[str, Any]) -> None:
    """The judge rate divides escalations by decisions; batch and stage histograms use histogram_quantile."""
    exprs = _expressions(dashboard)
    assert any('outcome="escalate"' in e and "/" in e and "tribunal_decisions_total" in e for e in exprs)
    for histogram in ("tribunal_batch_records_bucket", "tribunal_stage_seconds_bucket"):
        assert any("histogram_quantile" in e and histogram in e for e in exprs), histogram


def test_alert_rules_cover_the_operators_questions() -> None:
    """Lag growing, DLQ rate, audit precision below target, judge at budget, a tier restarting,
    a task running cold because its shipped rule could not be read, a schema registry away."""
    rules = [r for group in load_yaml(ALERTS_FILE)["groups"] for r in group["rules"]]
    assert sorted(r["alert"] for r in rules) == sorted(ALERTS)
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_expressions_parse_and_name_existing_metrics() -> None:
    """Each alert is valid PromQL over metrics that exist (ours, or listed external ones)."""
    for group in load_yaml(ALERTS_FILE)["groups"]:
        for rule in group["rules"]:
            used = promql_metrics(rule["expr"])
            assert used, rule["alert"]
            assert all(known_metric(m) for m in used), (rule["alert"], used)
    assert "kafka_consumergroup_lag" in EXTERNAL_METRICS


def test_metric_names_follow_prometheus_conventions() -> None:
    """Counters end in _total (the client adds it), histograms of time in _seconds, values in
    [0, 1] in _ratio, and a build-info metric carries the version."""
    families = exported_families()
    assert families["tribunal_build"] == "info"
    for name, kind in families.items():
        if kind == "histogram":
            assert name.endswith(("_seconds", "_records")), name
        if kind == "gauge":
            assert name.endswith(("_ratio", "_records", "_items")), name
    assert {"tribunal_fast_path_precision_ratio", "tribunal_worker_accuracy_ratio"} <= set(families)
    assert "tribunal_build_info" in exported_series()
