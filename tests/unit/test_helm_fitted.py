"""The Helm chart takes what `tribunal fit` writes: its helm-values.yaml over a cluster's values
renders every tier with the folder mounted read-only, the workers and the judge loading heads
from it, and the tasks file (with the rule) named in the one TOML every tier reads."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_helm_chart import CHART, KUBE_VERSION, RELEASE, VALUES, Rendered, _container, helm
from tribunal.consumers.classifiers.registry import parse_spec
from tribunal.core.settings import load_settings
from tribunal.offline.fit_output import HELM_MOUNT, helm_values

__all__ = ["helm"]  # the fixture, re-used from the chart's tests

WORKERS = ["tfidf:heads/w1-tfidf-linear.npz", "tfidf:heads/w2-tfidf-knn.npz?head=knn"]
JUDGE = "embedding:heads/judge-embedding-linear.npz"


def _render(helm: str, tmp_path: Path, text: str, *sets: str, base: str = "laptop") -> Rendered:
    fitted = tmp_path / "helm-values.yaml"
    fitted.write_text(text, encoding="utf-8")
    command = [helm, "template", RELEASE, str(CHART), "--namespace", "tribunal", "--kube-version", KUBE_VERSION,
               "-f", str(VALUES[base]), "-f", str(fitted)]  # fmt: skip
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return Rendered("fitted", [o for o in yaml.safe_load_all(result.stdout) if o])


def _mounts(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in _container(workload).get("volumeMounts", [])}


def test_a_fit_folder_deploys_with_the_chart(helm: str, tmp_path: Path) -> None:
    text = helm_values(WORKERS, JUDGE, 0.05, 0.95, fitted_judge=True)
    # The cluster values run a model server; the fitted judge turns it off. Plain Kafka, so the
    # rendered TOML loads here without the cluster's SASL secret.
    plain = ("kafka.securityProtocol=PLAINTEXT", "kafka.sasl.mechanism=", "kafka.sasl.username=")
    rendered = _render(helm, tmp_path, text, "fitted.existingClaim=fit-pvc", *plain, base="cpu-cluster")
    tiers = rendered.tiers()
    assert {_container(t)["args"][0] for t in tiers} == {"worker", "aggregator", "judge"}
    for tier in tiers:
        mount = _mounts(tier)["fitted"]
        assert (mount["mountPath"], mount["readOnly"]) == (HELM_MOUNT, True)
        claims = {v["name"]: v for v in tier["spec"]["template"]["spec"]["volumes"]}
        assert claims["fitted"]["persistentVolumeClaim"] == {"claimName": "fit-pvc", "readOnly": True}
    (tmp_path / "tribunal.toml").write_text(rendered.toml(), encoding="utf-8")
    settings = load_settings(tmp_path / "tribunal.toml")
    assert settings.tasks_file == Path(HELM_MOUNT) / "tasks.toml"
    assert settings.aggregator.workers == ("w1", "w2") and settings.aggregator.policy == "target"
    specs = [parse_spec(w.classifier) for w in settings.pipeline.workers]
    assert [s.arg for s in specs] == [f"{HELM_MOUNT}/heads/w1-tfidf-linear.npz", f"{HELM_MOUNT}/heads/w2-tfidf-knn.npz"]
    assert specs[1].options == {"head": "knn"}
    assert parse_spec(settings.judge.classifier).arg == f"{HELM_MOUNT}/heads/judge-embedding-linear.npz"
    judge = next(t for t in tiers if _container(t)["args"][0] == "judge")
    assert _container(judge)["image"].startswith("tribunal-models:"), "the fitted judge runs in-process"
    assert not [d for d in rendered.kind("Deployment") if d["metadata"]["name"].endswith("-model-server")]


def test_without_a_claim_nothing_is_mounted_and_your_judge_is_left_alone(helm: str, tmp_path: Path) -> None:
    """The folder baked into an image: no volume; a user's judge keeps the cluster's model server."""
    text = helm_values(WORKERS, "vllm:Qwen/Qwen2.5-7B-Instruct", 0.05, 0.95, fitted_judge=False)
    rendered = _render(helm, tmp_path, text, base="cpu-cluster")
    assert all("fitted" not in _mounts(t) for t in rendered.tiers())
    assert [d for d in rendered.kind("Deployment") if d["metadata"]["name"].endswith("-model-server")]


@pytest.mark.parametrize("mount", ["/models/fit", "/srv/tribunal"])
def test_the_mount_point_is_one_value(helm: str, tmp_path: Path, mount: str) -> None:
    rendered = _render(helm, tmp_path, helm_values(WORKERS, JUDGE, 0.05, 0.95, fitted_judge=True, mount=mount),
                       "fitted.existingClaim=c")  # fmt: skip
    assert all(_mounts(t)["fitted"]["mountPath"] == mount for t in rendered.tiers())
    assert f'tasks_file = "{mount}/tasks.toml"' in rendered.toml()
