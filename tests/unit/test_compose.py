"""The deployment files, checked without Docker: docker-compose.yml against the real CLI and
settings, deploy/prometheus.yml against the compose services, the Grafana dashboard against the
metrics that tribunal/metrics.py defines."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel
from typer.core import TyperGroup

from tribunal.cli import app
from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.consumers.classifiers.vllm_backend import engine_kwargs
from tribunal.core import metrics
from tribunal.core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "tribunal-dashboard.json"
DOCKERFILE = ROOT / "Dockerfile"

WORKERS = ("w1", "w2", "w3")
TIERS = (*WORKERS, "aggregator", "judge")  # long-running, scraped by Prometheus
TRIBUNAL_SERVICES = ("topics", *TIERS)
# Referenced by the dashboard before tribunal/metrics.py defines it (the lead wires it).
NOT_YET_EXPORTED: frozenset[str] = frozenset()

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
_METRIC = re.compile(r"\btribunal_\w+")


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` as `docker compose` resolves it with every variable unset."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group("default") or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _interpolate(_load_yaml(COMPOSE_FILE))
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), "use the exec form (a list) so arguments are not re-split by a shell"
    return [str(arg) for arg in command]


def _option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _check_cli(args: list[str]) -> None:
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


def _setting_env_names() -> set[str]:
    """Every env name Settings reads: TRIBUNAL_<FIELD>, TRIBUNAL_<SECTION>, TRIBUNAL_<SECTION>__<FIELD>."""
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        names.add(f"TRIBUNAL_{field}".upper())
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= {f"TRIBUNAL_{field}__{sub}".upper() for sub in section.model_fields}
    return names


def _exported_families() -> dict[str, str]:
    """Metric family name -> type (counter, gauge, histogram) of every metric in tribunal/metrics.py."""
    families: dict[str, str] = {}
    for name in metrics.__all__:
        collector = getattr(metrics, name)
        if isinstance(collector, MetricWrapperBase):
            families |= {family.name: family.type for family in collector.describe()}
    return families


def _exported_series() -> set[str]:
    """Series names that tribunal/metrics.py exposes, with the suffixes Prometheus adds."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {name + suffix for name, kind in _exported_families().items() for suffix in suffixes[kind]}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws data (rows are layout only), including panels nested in rows."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target.get("expr", "") for panel in _panels(dashboard) for target in panel.get("targets", [])]


# --- compose -----------------------------------------------------------------------------------
def test_compose_has_every_service(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    """The compose file defines Kafka, topic creation, each tier, Prometheus and the shared env anchor."""
    assert {"kafka", *TRIBUNAL_SERVICES, "prometheus"} <= set(services)
    assert "x-tribunal-env" in compose


def test_every_tribunal_image_service_is_checked(services: dict[str, dict[str, Any]]) -> None:
    """Each service built from this repo is in TRIBUNAL_SERVICES, so the CLI and env tests cover it."""
    built = {name for name, service in services.items() if "build" in service}
    assert built == set(TRIBUNAL_SERVICES)


def test_kafka_is_a_single_kraft_node_fit_for_transactions(services: dict[str, dict[str, Any]]) -> None:
    """Kafka is apache/kafka:3.9.1 in KRaft with replication 1 internal topics and #1004's workaround."""
    kafka = services["kafka"]
    env = _env(kafka)
    assert kafka["image"] == "apache/kafka:3.9.1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name
    assert env["KAFKA_TRANSACTION_PARTITION_VERIFICATION_ENABLE"] == "false"
    assert kafka["healthcheck"]["test"]


def test_topics_waits_for_a_healthy_kafka(services: dict[str, dict[str, Any]]) -> None:
    """The one-shot topics service runs `topics create` once Kafka's healthcheck passes."""
    topics = services["topics"]
    assert _command(topics) == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics.get("restart") == "no"


@pytest.mark.parametrize("name", TIERS)
def test_tiers_start_after_topics_exist(services: dict[str, dict[str, Any]], name: str) -> None:
    """Each tier starts only after the topics service completed successfully."""
    assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", TRIBUNAL_SERVICES)
def test_command_is_a_real_cli_invocation(services: dict[str, dict[str, Any]], name: str) -> None:
    """The service's command parses as `tribunal ...` with the Typer app's commands and options."""
    _check_cli(_command(services[name]))


def test_cli_check_rejects_unknown_commands_and_options() -> None:
    """The CLI check itself fails on a made-up subcommand or option."""
    with pytest.raises(AssertionError):
        _check_cli(["workers"])
    with pytest.raises(typer.TyperException, match="--metrics-port"):
        _check_cli(["worker", "--metrics-port", "9100"])


@pytest.mark.parametrize("name", TRIBUNAL_SERVICES)
def test_env_names_are_settings(services: dict[str, dict[str, Any]], name: str) -> None:
    """Every TRIBUNAL_* variable of the service names a real field of tribunal.core.settings.Settings."""
    known = _setting_env_names()
    unknown = [key for key in _env(services[name]) if key.upper().startswith("TRIBUNAL_") and key.upper() not in known]
    assert not unknown, f"{name}: not settings: {unknown}"


@pytest.mark.parametrize("name", TRIBUNAL_SERVICES)
def test_env_values_build_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's environment, with compose defaults, validates as Settings; instance ids stay per replica."""
    for key in list(os.environ):
        if key.upper().startswith("TRIBUNAL_"):
            monkeypatch.delenv(key)
    for key, value in _env(services[name]).items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.metrics_port is not None or name == "topics"
    assert "TRIBUNAL_RUNTIME__INSTANCE_ID" not in _env(services[name]), "a fixed id would fence sibling replicas"


@pytest.mark.parametrize("name", TIERS)
def test_tiers_are_scalable(services: dict[str, dict[str, Any]], name: str) -> None:
    """`docker compose up --scale` works: no container_name, hostname or published host port."""
    service = services[name]
    assert "container_name" not in service
    assert "hostname" not in service
    assert "ports" not in service


@pytest.mark.parametrize("name", WORKERS)
def test_worker_group_is_named_after_its_service(services: dict[str, dict[str, Any]], name: str) -> None:
    """`--name` equals the service name, and its classifier spec names a known backend."""
    args = _command(services[name])
    assert args[0] == "worker"
    assert _option(args, "--name") == name
    parse_spec(_option(args, "--classifier"))


def test_aggregator_expects_exactly_the_worker_services(services: dict[str, dict[str, Any]]) -> None:
    """TRIBUNAL_AGGREGATOR__WORKERS lists the worker services, so the quorum counts real voters."""
    workers = json.loads(_env(services["aggregator"])["TRIBUNAL_AGGREGATOR__WORKERS"])
    assert tuple(workers) == WORKERS


def test_judge_runs_vllm_on_a_reserved_gpu(services: dict[str, dict[str, Any]]) -> None:
    """The judge's classifier is a valid vllm spec and the service reserves one NVIDIA GPU."""
    judge = services["judge"]
    spec = parse_spec(_option(_command(judge), "--classifier"))
    assert spec.kind == "vllm"
    assert spec.arg
    engine_kwargs(spec.options)
    devices = judge["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") == 1 for d in devices)


def test_build_targets_exist_in_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    """Every build target that compose names is a stage of the Dockerfile, based on python:3.11-slim."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE))
    targets = {s["build"]["target"] for s in services.values() if "build" in s}
    assert targets <= stages
    assert "python:3.11-slim" in text


# --- prometheus --------------------------------------------------------------------------------
def _scrape_targets(config: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) of every static target and every DNS-discovered name."""
    targets: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            targets |= {(name, int(dns["port"])) for name in dns["names"]}
    return targets


def test_prometheus_scrapes_every_tier_on_its_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    """Each tier is a scrape target at TRIBUNAL_METRICS_PORT, and every target host is a service."""
    targets = _scrape_targets(_load_yaml(PROMETHEUS_FILE))
    for name in TIERS:
        port = int(_env(services[name])["TRIBUNAL_METRICS_PORT"])
        assert (name, port) in targets, f"{name}:{port} is not scraped"
    assert {host for host, _ in targets} <= {*services, "localhost"}


def test_prometheus_and_grafana_mount_the_deploy_files(services: dict[str, dict[str, Any]]) -> None:
    """Compose mounts deploy/prometheus.yml into Prometheus and the dashboard into Grafana."""
    assert any(v.startswith("./deploy/prometheus.yml:") for v in services["prometheus"]["volumes"])
    assert any(v.startswith("./deploy/grafana/tribunal-dashboard.json:") for v in services["grafana"]["volumes"])


# --- grafana -----------------------------------------------------------------------------------
def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    """The dashboard has a title, uid, schema version and panels with unique ids inside a 24-column grid."""
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_queries_a_tribunal_metric(dashboard: dict[str, Any]) -> None:
    """Each data panel has at least one PromQL target over a tribunal_* metric."""
    for panel in _panels(dashboard):
        exprs = [target.get("expr", "") for target in panel.get("targets", [])]
        assert any(_METRIC.search(expr) for expr in exprs), panel["title"]


def test_dashboard_metrics_exist(dashboard: dict[str, Any]) -> None:
    """Every tribunal_* series the dashboard queries is exported by tribunal/metrics.py (or pending wiring)."""
    used = {m for expr in _expressions(dashboard) for m in _METRIC.findall(expr)}
    assert used - _exported_series() <= NOT_YET_EXPORTED


def test_dashboard_covers_every_metric(dashboard: dict[str, Any]) -> None:
    """Each metric tribunal/metrics.py defines appears in at least one panel."""
    used = " ".join(_expressions(dashboard))
    missing = {family for family in _exported_families() if family not in used}
    assert not missing


def test_dashboard_has_judge_rate_and_quantiles(dashboard: dict[str, Any]) -> None:
    """The judge rate divides escalations by decisions; batch and stage histograms use histogram_quantile."""
    exprs = _expressions(dashboard)
    assert any('outcome="escalate"' in e and "/" in e and "tribunal_decisions_total" in e for e in exprs)
    for histogram in ("tribunal_batch_size_bucket", "tribunal_stage_seconds_bucket"):
        assert any("histogram_quantile" in e and histogram in e for e in exprs), histogram
