"""Helpers shared by the deployment checks (compose, Helm chart, alerts, dashboard): the real
CLI, the real settings and the metrics tribunal/core/metrics.py exports, so a deployment file that
names something that does not exist fails a test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import typer
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from typer.core import TyperGroup

from tribunal.cli import app
from tribunal.core import metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS_FILE = ROOT / "deploy" / "helm" / "tribunal" / "files" / "alerts.yml"

# Metrics of other programs that the alerts and the dashboard query. Not importable here, so
# listed with their source; everything else must be exported by this process.
EXTERNAL_METRICS = {
    "kafka_consumergroup_lag": "kafka-exporter (danielqsj/kafka-exporter), per group/topic/partition",
    "vllm:num_requests_running": "vllm serve /metrics",
    "vllm:num_requests_waiting": "vllm serve /metrics",
}
# Grafana's variables are not PromQL; any duration stands in for them when parsing.
_GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)")


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def check_cli(args: list[str]) -> None:
    """Resolve `tribunal ARGS` through the Typer app; a TyperException flags an unknown option."""
    command = typer.main.get_command(app)
    path = ["tribunal"]
    rest = list(args)
    while isinstance(command, TyperGroup):
        assert rest, f"`{' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        sub = command.get_command(typer.Context(command), name)
        assert sub is not None, f"`{' '.join(path)}` has no subcommand {name!r}"
        command, path = sub, [*path, name]
    command.make_context(" ".join(path), rest)


def exported_families() -> dict[str, str]:
    """Metric family name -> type of every metric tribunal/core/metrics.py defines."""
    families: dict[str, str] = {}
    for name in metrics.__all__:
        collector = getattr(metrics, name)
        if isinstance(collector, MetricWrapperBase):
            families |= {family.name: family.type for family in collector.describe()}
    return families


def exported_series() -> set[str]:
    """Every series name this process exposes on /metrics: Tribunal's, with the suffixes
    Prometheus adds, and prometheus_client's default collectors (process_*, python_*)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names = {name + suffix for name, kind in exported_families().items() for suffix in suffixes[kind]}
    for family in REGISTRY.collect():
        names |= {sample.name for sample in family.samples}
    return names


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects, from its parsed syntax tree (a syntax error raises)."""
    tree = promql_parser.parse(_GRAFANA_VARIABLES.sub("5m", expr))
    return _walk(tree)


def _walk(node: Any) -> set[str]:
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name} if node.name else set()
    if isinstance(node, promql_parser.MatrixSelector):
        return _walk(node.vector_selector)
    if isinstance(node, promql_parser.Call):
        return set().union(*(_walk(arg) for arg in node.args)) if node.args else set()
    found: set[str] = set()
    for attribute in ("expr", "lhs", "rhs"):
        child = getattr(node, attribute, None)
        if isinstance(child, promql_parser.Expr):
            found |= _walk(child)
    return found


def known_metric(name: str) -> bool:
    return name in exported_series() or name in EXTERNAL_METRICS
