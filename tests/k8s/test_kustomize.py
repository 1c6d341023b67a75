"""kustomize: k8s/base is the chart's render (no drift), and every overlay builds with
`kubectl kustomize` into objects that pass strict validation and the same policy."""

from __future__ import annotations

import pytest

from tests.k8s import generate
from tests.k8s.chart import (
    BASE_DIR,
    K8S_DIR,
    KUBE_VERSIONS,
    OVERLAYS,
    PROBE_EXEMPT,
    Obj,
    is_hook,
    kinds_names,
    kustomize,
    load_values,
    render,
)
from tests.k8s.policy import violations
from tests.k8s.schemas import validate

pytestmark = pytest.mark.xdist_group("k8s")


@pytest.fixture(scope="module")
def built() -> dict[str, list[Obj]]:
    """Each overlay (and setup/) through `kubectl kustomize`, once."""
    out = {name: kustomize(K8S_DIR / "overlays" / name) for name in OVERLAYS}
    out["setup"] = kustomize(K8S_DIR / "setup")
    return out


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    """values.schema.json's spec part and k8s/base match what the generator writes now."""
    code = generate.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_base_holds_exactly_the_chart_objects() -> None:
    chart = [o for o in render(load_values(BASE_DIR / "values.yaml")).objects if not is_hook(o)]
    base = kustomize(BASE_DIR)
    assert kinds_names(base) == kinds_names(chart)
    for b in base:
        assert b["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
        assert "helm.sh/chart" not in b["metadata"]["labels"]


@pytest.mark.parametrize("name", [*OVERLAYS, "setup"])
def test_overlay_objects_pass_strict_validation(built: dict[str, list[Obj]], name: str) -> None:
    errors = [msg for v in KUBE_VERSIONS for o in built[name] if (msg := validate(o, v))]
    assert errors == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_objects_meet_the_policy(built: dict[str, list[Obj]], name: str) -> None:
    assert violations(built[name], PROBE_EXEMPT) == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_are_namespaced_and_restricted(built: dict[str, list[Obj]], name: str) -> None:
    namespace = {"dev": "kubeloop-dev", "prod": "kubeloop"}[name]
    objects = built[name]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        namespace
    }
    namespaces = [o for o in [*objects, *built["setup"]] if o["kind"] == "Namespace"]
    ns = next(o for o in namespaces if o["metadata"]["name"] == namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ("NetworkPolicy", "kubeloop-default-deny") in kinds_names(objects)


def test_prod_adds_monitoring_and_dev_does_not(built: dict[str, list[Obj]]) -> None:
    prod = {o["kind"]: o for o in built["prod"]}
    assert prod["ServiceMonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert prod["PrometheusRule"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not {"ServiceMonitor", "PrometheusRule"} & {o["kind"] for o in built["dev"]}
    hpa = {
        o["metadata"]["name"]: o["spec"]["minReplicas"]
        for o in built["prod"]
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert hpa["kubeloop-stable"] == 3


def test_dev_fits_one_node(built: dict[str, list[Obj]]) -> None:
    pvc = next(o for o in built["dev"] if o["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert all(
        o["spec"]["minReplicas"] == 1
        for o in built["dev"]
        if o["kind"] == "HorizontalPodAutoscaler"
    )
