"""The chart's custom resources against their CRDs: KEDA and prometheus-operator objects through
models generated from the CRDs (a lossless round trip catches an unknown field). Helm as in
test_helm_chart.py (its fixtures, imported)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring
from pydantic import BaseModel

from tests.unit.test_helm_chart import VALUES, Rendered, helm, render, rendered

__all__ = ["helm", "rendered"]  # fixtures, imported so that pytest finds them here

CRD_MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": keda.ScaledObject,
    "TriggerAuthentication": keda.TriggerAuthentication,
    "PodMonitor": monitoring.PodMonitor,
    "PrometheusRule": monitoring.PrometheusRule,
}


def _model_check(model: type[BaseModel], obj: dict[str, Any]) -> None:
    """Validate against a CRD model and require a lossless round trip: a field the CRD does not
    define would be dropped by the model, and the comparison catches it."""
    parsed = model.model_validate(obj)
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj


def test_keda_and_prometheus_operator_resources_match_their_crds(rendered: Rendered) -> None:
    """ScaledObjects, TriggerAuthentications, PodMonitors and PrometheusRules fit their CRD models."""
    for obj in rendered.objects:
        if obj["kind"] in CRD_MODELS:
            _model_check(CRD_MODELS[obj["kind"]], obj)


def test_crd_model_check_rejects_an_unknown_field(helm: str) -> None:
    """A ScaledObject with a field KEDA does not define fails the round trip."""
    result = render(helm, VALUES["cpu-cluster"])
    scaled = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "ScaledObject"]
    broken = {**scaled[0], "spec": {**scaled[0]["spec"], "maxReplicas": 3}}
    with pytest.raises(AssertionError):
        _model_check(keda.ScaledObject, broken)
