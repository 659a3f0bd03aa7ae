"""The Helm chart, checked without a cluster: `helm template` renders it for the three example
values files; every built-in object validates against the Kubernetes JSON schemas
(kubernetes-validate ships them), KEDA and prometheus-operator resources against models
generated from their CRDs (cloudcoil), Strimzi KafkaTopics against their schema's structure;
then the invariants the runbook promises are checked on the rendered objects.

Helm is built from the Go module proxy by `make helm` (make test does it). Without it these
tests skip, saying so; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy_kit import ROOT, check_cli
from tribunal.consumers import judge, worker
from tribunal.consumers.aggregator import processor as aggregator
from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.core.settings import Settings, load_settings
from tribunal.core.topics import topic_specs

CHART = ROOT / "deploy" / "helm" / "tribunal"
VALUES = {
    name: ROOT / "deploy" / "helm" / "values" / f"{name}.yaml" for name in ("laptop", "cpu-cluster", "gpu-cluster")
}
RELEASE = "tribunal"
KUBE_VERSION = "1.33.0"
TIER_COMMANDS = {"worker", "aggregator", "judge"}
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|APIKEY|CREDENTIAL", re.IGNORECASE)
SECRET_SETTINGS = {"sasl_password", "ssl_keyfile_password", "api_key"}
CUSTOM_GROUPS = {"keda.sh", "kafka.strimzi.io", "monitoring.coreos.com"}


def helm_binary() -> str | None:
    """Helm as `make helm` built it (TRIBUNAL_HELM), or one on PATH, or the per-machine cache."""
    candidates = [os.environ.get("TRIBUNAL_HELM"), shutil.which("helm")]
    candidates += [str(p) for p in sorted(Path.home().glob(".cache/tribunal/helm-*/helm"), reverse=True)]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def helm() -> str:
    found = helm_binary()
    if found is None:
        reason = "helm is not installed: `make helm` builds it from the Go module proxy (needs Go)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def render(helm: str, values: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = [helm, "template", RELEASE, str(CHART), "--namespace", "tribunal", "--kube-version", KUBE_VERSION]
    command += ["-f", str(values)]
    for override in overrides:
        command += ["--set", override]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


@dataclass
class Rendered:
    name: str
    objects: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def toml(self) -> str:
        text: str = self.get("ConfigMap", f"{RELEASE}-config")["data"]["tribunal.toml"]
        return text

    def tiers(self) -> list[dict[str, Any]]:
        return [s for s in self.kind("StatefulSet") if _container(s)["args"][0] in TIER_COMMANDS]

    def workloads(self) -> Iterator[dict[str, Any]]:
        yield from (o for o in self.objects if o["kind"] in {"StatefulSet", "Deployment", "Job"})


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest, helm: str) -> Rendered:
    result = render(helm, VALUES[request.param])
    assert result.returncode == 0, result.stderr
    return Rendered(request.param, [o for o in yaml.safe_load_all(result.stdout) if o])


@pytest.fixture
def settings(rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a tier builds from the rendered TOML and its pod's env (a secretKeyRef
    stands for a value from the Secret), with no TRIBUNAL_* of this shell."""
    for key in list(os.environ):
        if key.upper().startswith("TRIBUNAL_"):
            monkeypatch.delenv(key)
    for env in _container(rendered.tiers()[0])["env"]:
        if env["name"] == "TRIBUNAL_CONFIG":
            continue
        source = env.get("valueFrom", {})
        value = env.get("value") or ("pod-0" if "fieldRef" in source else "from-a-secret")
        monkeypatch.setenv(env["name"], value)
    path = tmp_path / "tribunal.toml"
    path.write_text(rendered.toml(), encoding="utf-8")
    return load_settings(path)


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _tier_partitions(settings: Settings, tier: dict[str, Any]) -> int:
    return settings.topics.judge_partitions if _container(tier)["args"][0] == "judge" else settings.topics.partitions


# --- rendering and schemas -------------------------------------------------------------------
def test_every_values_file_renders_each_tier(rendered: Rendered, settings: Settings) -> None:
    """One StatefulSet per worker group, one for the aggregator, one for the judge."""
    commands = sorted(_container(s)["args"][0] for s in rendered.tiers())
    assert commands == sorted(["aggregator", "judge", *["worker"] * len(settings.aggregator.workers)])


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint_passes_strictly(helm: str, values: str) -> None:
    """`helm lint --strict` (warnings are failures) accepts the chart with each values file."""
    command = [helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "-f", str(VALUES[values])]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builtin_objects_match_the_kubernetes_schemas(rendered: Rendered) -> None:
    """Every object of a built-in API validates (strict: no unknown field) against Kubernetes 1.33."""
    builtin = [o for o in rendered.objects if o["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    assert builtin
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")


def test_schema_check_rejects_a_broken_object(rendered: Rendered) -> None:
    """The validation itself fails on a misspelt field (the check can fail)."""
    broken = dict(rendered.tiers()[0])
    broken["spec"] = {**broken["spec"], "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


# Strimzi's KafkaTopic v1beta2 spec (its CRD, kafkatopics.kafka.strimzi.io), the fields we use.
# No package here ships the CRD, so its structure is checked against this transcription.
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            },
        },
    },
}


def test_topics_are_created_exactly_as_the_cli_would(rendered: Rendered, settings: Settings) -> None:
    """Strimzi KafkaTopics equal `tribunal topics create`'s specs; otherwise the hook Job runs it."""
    topics = rendered.kind("KafkaTopic")
    if not topics:
        job = rendered.get("Job", f"{RELEASE}-topics")
        assert _container(job)["args"] == ["topics", "create"]
        assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
        return
    for topic in topics:
        jsonschema.validate(topic, KAFKA_TOPIC_SCHEMA)
    rendered_specs = {
        t["spec"]["topicName"]: (t["spec"]["partitions"], t["spec"].get("config", {}), t["spec"]["replicas"])
        for t in topics
    }
    expected = {s.name: (s.partitions, s.config, settings.topics.replication_factor) for s in topic_specs(settings)}
    assert rendered_specs == expected


# --- the configuration ------------------------------------------------------------------------
def test_one_toml_configures_every_tier(rendered: Rendered, settings: Settings) -> None:
    """The TOML parses as Settings; its worker list is the worker StatefulSets; no secret in it."""
    document = tomllib.loads(rendered.toml())
    assert not SECRET_SETTINGS & set(document.get("kafka", {})), "secrets come from Secrets, never the TOML"
    workers = [_container(s)["args"] for s in rendered.tiers() if _container(s)["args"][0] == "worker"]
    assert sorted(settings.aggregator.workers) == sorted(args[args.index("--name") + 1] for args in workers)
    assert [w.name for w in settings.pipeline.workers] == list(settings.aggregator.workers)
    for tier in rendered.tiers():
        env = {e["name"]: e for e in _container(tier)["env"]}
        mounts = {m["mountPath"] for m in _container(tier)["volumeMounts"]}
        assert env["TRIBUNAL_CONFIG"]["value"] in mounts


def test_tier_commands_are_real_cli_invocations(rendered: Rendered) -> None:
    """Each tier's args parse as `tribunal ...` with the Typer app's commands and options."""
    for workload in rendered.workloads():
        args = _container(workload).get("args")
        if args and args[0] in {*TIER_COMMANDS, "topics"}:
            check_cli(args)


def test_autoscalers_watch_the_groups_the_tiers_join(rendered: Rendered, settings: Settings) -> None:
    """Each ScaledObject's consumer group and topics are the ones its tier really uses."""
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in rendered.kind("ScaledObject")}
    if not scaled:
        pytest.skip(f"{rendered.name}: autoscaling is off")
    t = settings.topics
    for tier in rendered.tiers():
        args = _container(tier)["args"]
        if args[0] == "worker":
            named = settings.model_copy(update={"worker": settings.worker.model_copy(update={"name": args[2]})})
            group, topics = worker.group_id(named), {t.items_topic}
        elif args[0] == "aggregator":
            group, topics = aggregator.group_id(settings), {t.items_topic, t.votes_topic}
        else:
            group, topics = judge.group_id(settings), {t.judge_topic}
        triggers = scaled[tier["metadata"]["name"]]["spec"]["triggers"]
        assert {tr["metadata"]["consumerGroup"] for tr in triggers} == {group}
        assert {tr["metadata"]["topic"] for tr in triggers} == topics


# --- invariants -------------------------------------------------------------------------------
def test_replicas_never_exceed_partitions(rendered: Rendered, settings: Settings) -> None:
    """A tier never runs (or scales to) more replicas than partitions of what it reads."""
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in rendered.kind("ScaledObject")}
    for tier in rendered.tiers():
        partitions = _tier_partitions(settings, tier)
        name = tier["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in tier["spec"], f"{name}: KEDA owns the replica count"
            assert 1 <= scaled[name]["minReplicaCount"] <= scaled[name]["maxReplicaCount"] <= partitions, name
        else:
            assert 1 <= tier["spec"]["replicas"] <= partitions, name


def test_chart_refuses_replicas_beyond_partitions(helm: str) -> None:
    """Asking for more replicas than partitions fails the render with the reason."""
    result = render(helm, VALUES["laptop"], "aggregator.replicas=9")
    assert result.returncode != 0
    assert "exceed the 3 partitions" in result.stderr


def test_autoscaling_is_capped_at_partitions(helm: str) -> None:
    """A maxReplicas above the partitions renders as the partition count, not beyond."""
    result = render(helm, VALUES["cpu-cluster"], "judge.maxReplicas=50")
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    judge_scaler = next(o for o in objects if o["kind"] == "ScaledObject" and o["metadata"]["name"].endswith("-judge"))
    assert judge_scaler["spec"]["maxReplicaCount"] == 4  # cpu-cluster's judgePartitions


def test_instance_ids_are_stable_pod_names(rendered: Rendered) -> None:
    """Tiers are StatefulSets whose transactional instance id is the pod name (stable, unique)."""
    for workload in rendered.workloads():
        args = _container(workload).get("args") or []
        if args and args[0] in TIER_COMMANDS:
            assert workload["kind"] == "StatefulSet", workload["metadata"]["name"]
            env = {e["name"]: e for e in _container(workload)["env"]}
            field = env["TRIBUNAL_RUNTIME__INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.name"


def test_every_tier_has_probes_on_its_health_port(rendered: Rendered, settings: Settings) -> None:
    """Startup, liveness (/livez) and readiness (/readyz) on the port the TOML's health_port names."""
    for tier in rendered.tiers():
        container = _container(tier)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == settings.health_port
        assert ports["metrics"] == settings.metrics_port
        for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, (tier["metadata"]["name"], probe)


def test_every_tier_has_a_disruption_budget(rendered: Rendered) -> None:
    """Where budgets are on, each tier's pods are selected by exactly one PodDisruptionBudget."""
    budgets = rendered.kind("PodDisruptionBudget")
    if not budgets:
        pytest.skip(f"{rendered.name}: disruption budgets are off")
    for tier in rendered.tiers():
        matching = [b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], _pod_labels(tier))]
        assert len(matching) == 1, tier["metadata"]["name"]


def test_no_secret_in_plain_env(rendered: Rendered) -> None:
    """Secret-looking env vars come from secretKeyRef, never a literal; the chart's own Secret
    holds only non-secret modes."""
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{workload['metadata']['name']}: {env['name']} is a literal"
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
            assert not any(SECRET_NAME.search(arg) and "=$(" not in arg for arg in container.get("args", [])), container
    for secret in rendered.kind("Secret"):
        assert set(secret.get("stringData", {})) <= {"sasl", "tls", "username"}, secret["metadata"]["name"]


def test_secret_check_catches_a_literal_password(rendered: Rendered) -> None:
    """The plain-env check fails on a password given as a value."""
    tier = rendered.tiers()[0]
    container = {**_container(tier), "env": [{"name": "TRIBUNAL_KAFKA__SASL_PASSWORD", "value": "hunter2"}]}
    broken = {**tier, "spec": {**tier["spec"], "template": {**tier["spec"]["template"]}}}
    broken["spec"]["template"]["spec"] = {**tier["spec"]["template"]["spec"], "containers": [container]}
    with pytest.raises(AssertionError, match="literal"):
        test_no_secret_in_plain_env(Rendered("broken", [broken]))


def test_judge_is_a_client_of_the_model_server(rendered: Rendered, settings: Settings) -> None:
    """With a model server, the judge's spec is `openai:` at that Service's name and port, and
    the Service selects the server's pods; without one, the judge runs its model in-process."""
    judge_tier = next(s for s in rendered.tiers() if _container(s)["args"][0] == "judge")
    spec = parse_spec(settings.judge.classifier)
    servers = [d for d in rendered.kind("Deployment") if d["metadata"]["name"].endswith("-model-server")]
    if not servers:
        assert spec.kind != "openai"
        assert _container(judge_tier)["image"].startswith("tribunal-models:")
        return
    url = urlsplit(spec.arg)
    service = rendered.get("Service", url.hostname or "")
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    assert _selects(service["spec"]["selector"], _pod_labels(servers[0]))
    server_ports = {p["name"] for p in _container(servers[0])["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= server_ports
    assert spec.options["mode"] in {"vllm", "llamacpp"}
    assert _container(judge_tier)["image"].startswith("tribunal-core:"), "a client needs no model dependencies"


def test_gpu_cluster_runs_vllm_serve_on_gpu_nodes(helm: str) -> None:
    """The GPU values: the vllm/vllm-openai image with a GPU limit, node selector and tolerations,
    and the judge asking it for structured `choice` outputs (mode=vllm)."""
    result = render(helm, VALUES["gpu-cluster"])
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    server = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-model-server"))
    pod = server["spec"]["template"]["spec"]
    container = _container(server)
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and pod["tolerations"]
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{RELEASE}-config")
    classifier = tomllib.loads(config["data"]["tribunal.toml"])["judge"]["classifier"]
    assert parse_spec(classifier).options["mode"] == "vllm"
