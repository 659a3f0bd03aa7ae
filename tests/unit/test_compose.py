"""The deployment files, checked without Docker: docker-compose.yml against the real CLI and
settings, deploy/prometheus.yml against the compose services, the Grafana dashboard against the
metrics that tribunal/core/metrics.py defines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from tests.unit.deploy_kit import (
    ALERTS_FILE,
    ROOT,
    check_cli,
    load_yaml,
)
from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.core.settings import Settings, load_settings

COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"

WORKERS = ("w1", "w2", "w3")
TIERS = (*WORKERS, "aggregator", "judge")  # long-running, scraped by Prometheus
TRIBUNAL_SERVICES = ("topics", *TIERS)
# Python packages of the `models` extra: the core image (aggregator, judge client) has none.
MODEL_PACKAGES = ("numpy", "sklearn", "scipy", "llama_cpp", "vaderSentiment", "textblob", "afinn", "joblib", "vllm")

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` as `docker compose` resolves it with every variable unset."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group("default") or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _interpolate(load_yaml(COMPOSE_FILE))
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


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


def _setting_env_names() -> set[str]:
    """Every env name Settings reads: TRIBUNAL_<FIELD>, TRIBUNAL_<SECTION>, TRIBUNAL_<SECTION>__<FIELD>."""
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        names.add(f"TRIBUNAL_{field}".upper())
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names |= {f"TRIBUNAL_{field}__{sub}".upper() for sub in section.model_fields}
    return names


# --- compose -----------------------------------------------------------------------------------
def test_compose_has_every_service(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    """The compose file defines Kafka, topic creation, each tier, the model server, kafka-exporter,
    Prometheus, Grafana and the shared env anchor."""
    assert {"kafka", *TRIBUNAL_SERVICES, "vllm", "kafka-exporter", "prometheus", "grafana"} <= set(services)
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
    check_cli(_command(services[name]))


def test_cli_check_rejects_unknown_commands_and_options() -> None:
    """The CLI check itself fails on a made-up subcommand or option."""
    with pytest.raises(AssertionError):
        check_cli(["workers"])
    with pytest.raises(typer.TyperException, match="--metrics-port"):
        check_cli(["worker", "--metrics-port", "9100"])


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


def test_vllm_serve_runs_on_a_reserved_gpu(services: dict[str, dict[str, Any]]) -> None:
    """The judge's model is `vllm serve` in its own service, reserving one NVIDIA GPU."""
    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    args = [str(a) for a in vllm["command"]]
    assert any(a.startswith("--served-model-name=") for a in args)
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") == 1 for d in devices)


def test_judge_is_a_client_of_vllm(services: dict[str, dict[str, Any]]) -> None:
    """The judge asks the vllm service for structured choices and waits for it to be healthy;
    it reserves no GPU and loads no weights itself."""
    judge = services["judge"]
    spec = parse_spec(_option(_command(judge), "--classifier"))
    served = next(a for a in services["vllm"]["command"] if str(a).startswith("--served-model-name="))
    port = next(a for a in services["vllm"]["command"] if str(a).startswith("--port="))
    assert spec.kind == "openai"
    assert spec.arg == f"http://vllm:{port.split('=', 1)[1]}/v1"
    assert spec.options["mode"] == "vllm" and spec.options["model"] == served.split("=", 1)[1]
    assert judge["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "deploy" not in judge and "volumes" not in judge


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
    targets = _scrape_targets(load_yaml(PROMETHEUS_FILE))
    for name in TIERS:
        port = int(_env(services[name])["TRIBUNAL_METRICS_PORT"])
        assert (name, port) in targets, f"{name}:{port} is not scraped"
    assert {host for host, _ in targets} <= {*services, "localhost"}


def test_prometheus_and_grafana_mount_the_deploy_files(services: dict[str, dict[str, Any]]) -> None:
    """Compose mounts deploy/prometheus.yml into Prometheus and the dashboard into Grafana."""
    assert any(v.startswith("./deploy/prometheus.yml:") for v in services["prometheus"]["volumes"])
    assert any(v.startswith("./deploy/grafana/tribunal-dashboard.json:") for v in services["grafana"]["volumes"])


# --- grafana -----------------------------------------------------------------------------------


# --- images ------------------------------------------------------------------------------------
def _stages() -> dict[str, str]:
    """Dockerfile stage name -> its text (FROM line to the next FROM)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    parts = re.split(r"^(?=FROM\s)", text, flags=re.MULTILINE)
    found = {}
    for part in parts:
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, flags=re.IGNORECASE)
        if match:
            found[match.group(1)] = part
    return found


def test_tiers_without_models_use_the_slim_image(services: dict[str, dict[str, Any]]) -> None:
    """Aggregator, judge (a client) and topics build `core`, whose venv installs no model
    extra (only `registry`, for the intake and sink); workers build `models` with the models
    extra."""
    stages = _stages()
    for name in ("topics", "aggregator", "judge"):
        assert services[name]["build"]["target"] == "core", name
    for name in WORKERS:
        assert services[name]["build"]["target"] == "models", name
    assert "COPY --from=build-core" in stages["core"]
    assert re.search(r'pip install "\.\[registry\]"(\s|$)', stages["build-core"]), stages["build-core"]
    assert ".[models,registry]" in stages["build-models"]


def test_core_modules_import_no_model_package() -> None:
    """The aggregator, the judge with its HTTP backend and the CLI import none of the models
    extra's packages, so the slim image really runs them (checked in a fresh interpreter)."""
    modules = [
        "tribunal.consumers.aggregator.processor",
        "tribunal.consumers.judge",
        "tribunal.consumers.classifiers.openai_http",
        "tribunal.cli",
    ]
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in {MODEL_PACKAGES!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


def test_llama_cpp_is_built_for_any_cpu() -> None:
    """llama.cpp compiles with GGML_NATIVE=OFF: a -march=native build dies with SIGILL elsewhere."""
    assert re.search(r"CMAKE_ARGS=.*-DGGML_NATIVE=OFF", _stages()["build-models"])


def test_writable_volume_paths_belong_to_the_runtime_user(services: dict[str, dict[str, Any]]) -> None:
    """Every named volume a Tribunal image mounts sits under a directory the Dockerfile creates
    and chowns to uid 10001, so Docker seeds the volume writable for that user."""
    base = _stages()["base"]
    assert "--uid 10001 tribunal" in base and "chown -R tribunal:tribunal /home/tribunal" in base
    created = set(re.findall(r"mkdir -p ([^\\&\n]+)", base)[0].split())
    for name in TRIBUNAL_SERVICES:
        for volume in services[name].get("volumes", []):
            target = volume.split(":")[1]
            assert any(target == path or target.startswith(path + "/") for path in created), (name, target)


def test_ingest_example_reads_a_shipped_sample(compose: dict[str, Any]) -> None:
    """The ingest example in the compose header names a file that exists and that the images copy."""
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("x-tribunal-env")[0]
    match = re.search(r"topics ingest --input (/app/(\S+))", header)
    assert match, "the compose header shows how to ingest the sample"
    assert (ROOT / match.group(2)).is_file()
    stages = _stages()
    for stage in ("core", "models"):
        assert "COPY data/demo ./data/demo" in stages[stage], stage


# --- health ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TIERS)
def test_every_tier_has_a_healthcheck_on_readyz(services: dict[str, dict[str, Any]], name: str) -> None:
    """Each tier's healthcheck asks /readyz on the port TRIBUNAL_HEALTH_PORT sets."""
    check = " ".join(services[name]["healthcheck"]["test"])
    port = _env(services[name])["TRIBUNAL_HEALTH_PORT"]
    assert f"127.0.0.1:{port}/readyz" in check


@pytest.mark.parametrize("name", ["kafka", "vllm", "kafka-exporter", "prometheus", "grafana"])
def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    """Not only the tiers: Kafka, the model server, the exporter and the monitoring stack too."""
    assert services[name]["healthcheck"]["test"]


# --- kafka-exporter and alerts -------------------------------------------------------------------
def test_kafka_exporter_reads_the_broker_and_is_scraped(services: dict[str, dict[str, Any]]) -> None:
    """Broker-side lag survives a dead tier: kafka-exporter reads Kafka and Prometheus scrapes it."""
    exporter = services["kafka-exporter"]
    assert "--kafka.server=kafka:9092" in exporter["command"]
    assert ("kafka-exporter", 9308) in _scrape_targets(load_yaml(PROMETHEUS_FILE))


def test_prometheus_loads_the_alert_rules(services: dict[str, dict[str, Any]]) -> None:
    """deploy/prometheus.yml names a rule file that compose mounts from the chart's alerts.yml."""
    config = load_yaml(PROMETHEUS_FILE)
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"] if v.startswith("./")}
    for rule_file in config["rule_files"]:
        assert (ROOT / mounted[rule_file]).resolve() == ALERTS_FILE
