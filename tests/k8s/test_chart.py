"""The Helm chart through the real Helm v4 SDK: lint, render every ci/*-values.yaml, strict
schema validation of every object (CRDs included), policy, and what each switch renders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.components.core.spec import parse_spec
from tests.k8s.chart import (
    CHART_DIR,
    KUBE_VERSIONS,
    PROBE_EXEMPT,
    Obj,
    Rendered,
    ci_values_files,
    kinds_names,
    load_values,
    render,
)
from tests.k8s.policy import pod_spec, violations
from tests.k8s.schemas import validate

pytestmark = pytest.mark.xdist_group("k8s")

CI_FILES = {p.name.removesuffix("-values.yaml"): p for p in ci_values_files()}


@pytest.fixture(scope="module")
def renders() -> dict[str, Rendered]:
    """Each ci values file rendered once."""
    return {name: render(load_values(path)) for name, path in CI_FILES.items()}


def _containers(obj: Obj) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return list(spec["containers"]) if spec else []


def _env(obj: Obj, container: int = 0) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _containers(obj)[container].get("env", [])}


def _spec_of(r: Rendered) -> dict[str, Any]:
    text = r.get("ConfigMap", "kubeloop-spec")["data"]["kubeloop.yaml"]
    spec = yaml.safe_load(text)
    assert isinstance(spec, dict)
    return spec


def test_every_switch_has_a_ci_values_file() -> None:
    assert {
        "default",
        "redis",
        "external-redis",
        "monitoring",
        "no-autoscaling",
        "no-networkpolicy",
        "existing-secrets",
        "gpu",
        "minimal",
    } <= set(CI_FILES)


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_lint_is_clean(name: str) -> None:
    import helm_python as helm

    report = helm.lint(CHART_DIR, load_values(CI_FILES[name]), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_objects_pass_strict_schema_validation(renders: dict[str, Rendered], name: str) -> None:
    errors = [
        msg
        for version in KUBE_VERSIONS
        for obj in renders[name].objects
        if (msg := validate(obj, version))
    ]
    assert errors == []


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_objects_meet_the_policy(renders: dict[str, Rendered], name: str) -> None:
    assert violations(renders[name].objects, PROBE_EXEMPT) == []


def test_probe_exemption_is_only_the_controller(renders: dict[str, Rendered]) -> None:
    controller = renders["default"].get("Deployment", "kubeloop-controller")
    assert "ports" not in _containers(controller)[0]  # exempt because it really serves nothing
    others = [
        o
        for o in renders["default"].objects
        if o["kind"] in ("Deployment", "StatefulSet") and o is not controller
    ]
    assert others and all(
        "livenessProbe" in c and "readinessProbe" in c for o in others for c in _containers(o)
    )


def test_the_cached_validator_agrees_with_kubernetes_validate(
    renders: dict[str, Rendered],
) -> None:
    import copy

    import kubernetes_validate

    good = renders["default"].get("Deployment", "kubeloop-gateway")
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["bogus"] = 1
    kubernetes_validate.validate(good, KUBE_VERSIONS[0], strict=True)
    assert validate(good, KUBE_VERSIONS[0]) is None
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
    assert "'bogus' was unexpected" in str(validate(bad, KUBE_VERSIONS[0]))


def test_crd_objects_are_checked_strictly(renders: dict[str, Rendered]) -> None:
    import copy

    monitor = copy.deepcopy(renders["monitoring"].get("ServiceMonitor", "kubeloop"))
    assert validate(monitor, KUBE_VERSIONS[0]) is None
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "5s"
    assert "scrapeEvery" in str(validate(monitor, KUBE_VERSIONS[0]))


# ------------------------------------------------------------------------- values schema


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": 3}, "replicas"),
        ({"gateway": {"replicas": 3}}, "replicas"),
        ({"variants": {"stable": {"modeltag": "churn:1"}}}, "modeltag"),
        ({"networkPolicy": {"prometheus": {"port": 9090, "cidr": "x"}}}, "cidr"),
        ({"spec": {"serve": {"canary_step": [5, 100]}}}, "canary_step"),
        ({"spec": {"train": {"accelerator": {"gpus": 1}}}}, "gpus"),
        ({"image": {"tag": "latest"}}, "tag"),
        ({"redis": {"image": {"tag": "latest"}}}, "tag"),
        ({"gateway": {"resources": {"limits": None}}}, "limits"),
        ({"controller": {"resources": {"requests": {"cpu": "lots"}}}}, "cpu"),
        ({"spec": {"name": "Bad Name!"}}, "name"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], field: str) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError, match=field):
        render(values)


def test_schema_has_no_open_objects() -> None:
    """`additionalProperties: false` at every fixed-key object level (maps declare a value type)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_objects = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_objects.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "#")
    assert open_objects == []


def test_values_yaml_documents_every_top_level_key() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = load_values(CHART_DIR / "values.yaml")
    assert set(values) == set(schema["properties"])


# ------------------------------------------------------------------------- the spec ConfigMap


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_spec_configmap_is_a_valid_spec_pointing_at_the_release(
    renders: dict[str, Rendered], name: str
) -> None:
    r = renders[name]
    spec = parse_spec(_spec_of(r), source=f"ci/{name}")
    assert spec.serve.host == "kubeloop-gateway"
    assert spec.serve.stable_url == "http://kubeloop-stable:3000"
    canary = any(o["metadata"]["name"] == "kubeloop-canary" for o in r.objects)
    assert spec.serve.canary_url == ("http://kubeloop-canary:3000" if canary else None)
    assert spec.workdir == "/var/lib/kubeloop/work"
    services = {n for k, n in kinds_names(r.objects) if k == "Service"}
    for url in filter(None, (spec.serve.stable_url, spec.serve.canary_url)):
        assert re.sub(r"^http://|:\d+$", "", url) in services


def test_gpu_values_reach_the_spec(renders: dict[str, Rendered]) -> None:
    spec = parse_spec(_spec_of(renders["gpu"]))
    acc = spec.train.accelerator
    assert (acc.type, acc.count) == ("nvidia.com/gpu", 1)
    assert acc.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert acc.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec.train.device == "cuda"
    assert parse_spec(_spec_of(renders["default"])).train.accelerator.count == 0


def test_spec_change_rolls_the_pods(renders: dict[str, Rendered]) -> None:
    def checksum(r: Rendered) -> str:
        obj = r.get("Deployment", "kubeloop-gateway")
        return str(obj["spec"]["template"]["metadata"]["annotations"]["checksum/spec"])

    assert checksum(renders["default"]) != checksum(renders["gpu"])


# ------------------------------------------------------------------------- switches


def test_default_install(renders: dict[str, Rendered]) -> None:
    r = renders["default"]
    deployments = {n for k, n in kinds_names(r.objects) if k == "Deployment"}
    assert deployments == {
        "kubeloop-gateway",
        "kubeloop-stable",
        "kubeloop-canary",
        "kubeloop-controller",
        "kubeloop-trigger",
        "kubeloop-feast",
    }
    assert ("StatefulSet", "kubeloop-redis") in kinds_names(r.objects)
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & {
        o["kind"] for o in r.objects
    }
    commands = {
        o["metadata"]["name"]: _containers(o)[0]["command"]
        for o in r.objects
        if o["kind"] == "Deployment"
    }
    assert commands["kubeloop-gateway"][:2] == ["kubeloop", "serve"]
    assert commands["kubeloop-stable"][:3] == [
        "bentoml",
        "serve",
        "kubeloop.serving.variant:ModelVariant",
    ]
    assert commands["kubeloop-controller"][:3] == ["kubeloop", "rollout", "controller"]
    assert commands["kubeloop-trigger"][:3] == ["kubeloop", "trigger", "serve"]
    assert commands["kubeloop-trigger"][-2:] == [
        "--kfp-host",
        "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
    ]
    assert "serve" in commands["kubeloop-feast"]
    tags = {
        n: _env(r.get("Deployment", n))["KUBELOOP_MODEL_TAG"]["value"]
        for n in ("kubeloop-stable", "kubeloop-canary")
    }
    assert tags == {"kubeloop-stable": "churn:production", "kubeloop-canary": "churn:latest"}
    assert "kubectl -n kubeloop create secret generic kubeloop-admin" in r.notes
    trigger = r.get("Service", "kubeloop-trigger")  # the README's Alertmanager webhook target
    assert [p["port"] for p in trigger["spec"]["ports"]] == [9095]


def test_bentoml_pods_share_the_store_but_not_their_metrics_files(
    renders: dict[str, Rendered],
) -> None:
    for name in ("kubeloop-gateway", "kubeloop-stable", "kubeloop-canary", "kubeloop-controller"):
        obj = renders["default"].get("Deployment", name)
        env = _env(obj)
        assert env["BENTOML_HOME"]["value"] == "/var/lib/kubeloop/bentoml"
        mounts = {m["mountPath"]: m["name"] for m in _containers(obj)[0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}  # type: ignore[index]
        assert "persistentVolumeClaim" in volumes[mounts["/var/lib/kubeloop"]]
        assert "emptyDir" in volumes[mounts["/var/lib/kubeloop/bentoml/prometheus_multiproc_dir"]]
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_existing_secrets_are_referenced_never_copied(renders: dict[str, Rendered]) -> None:
    r = renders["existing-secrets"]
    gateway = _env(r.get("Deployment", "kubeloop-gateway"))
    assert gateway["KUBELOOP_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlops-gateway-admin",
        "key": "token",
    }
    trigger = r.get("Deployment", "kubeloop-trigger")
    token_file = _env(trigger)["KF_PIPELINES_SA_TOKEN_PATH"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in _containers(trigger)[0]["volumeMounts"]}
    assert token_file == mounts["kfp-token"] + "/token"
    kfp_volume = next(v for v in pod_spec(trigger)["volumes"] if v["name"] == "kfp-token")  # type: ignore[index]
    assert kfp_volume["secret"] == {
        "secretName": "kfp-api-token",
        "items": [{"key": "token", "path": "token"}],
    }
    assert _containers(trigger)[0]["command"][-1] == "https://kfp.example.com"
    assert "KF_PIPELINES_SA_TOKEN_PATH" not in _env(
        renders["default"].get("Deployment", "kubeloop-trigger")
    )
    assert gateway["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kubeloop-redis"
    assert "$(REDIS_PASSWORD)" in gateway["REDIS_CONNECTION_STRING"]["value"]
    assert not any(o["kind"] in ("Secret", "PersistentVolumeClaim") for o in r.objects)
    claim = {
        v["persistentVolumeClaim"]["claimName"]
        for o in r.objects
        if (spec := pod_spec(o))
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert claim == {"mlops-model-store"}
    images = {c["image"] for o in r.objects for c in _containers(o) if "kubeloop" in c["image"]}
    assert images == {"ghcr.io/kubeloop/kubeloop-serving:0.1.0@sha256:" + "0123456789abcdef" * 4}
    pull = pod_spec(r.get("Deployment", "kubeloop-gateway"))["imagePullSecrets"]  # type: ignore[index]
    assert pull == [{"name": "ghcr-pull"}]


def test_redis_switches(renders: dict[str, Rendered]) -> None:
    bundled = renders["redis"]
    sts = bundled.get("StatefulSet", "kubeloop-redis")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert "--requirepass" in _containers(sts)[0]["command"]
    external = renders["external-redis"]
    assert ("StatefulSet", "kubeloop-redis") not in kinds_names(external.objects)
    feast = _env(external.get("Deployment", "kubeloop-feast"))
    assert feast["REDIS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubeloop-feast-online-store",
        "key": "redis-connection-string",
    }
    assert feast["FEAST_REGISTRY_PATH"]["value"] == "s3://kubeloop-feast/churn/registry.db"


def test_external_redis_needs_its_secret() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=r"feast\.onlineStore\.existingSecret"):
        render({"redis": {"enabled": False}})


def test_trigger_needs_a_kfp_host() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match=r"kfp\.host is required"):
        render({"kfp": {"host": ""}})
    assert ("Deployment", "kubeloop-trigger") not in kinds_names(
        render({"kfp": {"host": ""}, "trigger": {"enabled": False}}).objects
    )


def test_autoscaling_and_pdb_switches(renders: dict[str, Rendered]) -> None:
    on, off = renders["default"], renders["no-autoscaling"]
    assert {n for k, n in kinds_names(on.objects) if k == "HorizontalPodAutoscaler"} == {
        "kubeloop-stable",
        "kubeloop-canary",
    }
    assert {n for k, n in kinds_names(on.objects) if k == "PodDisruptionBudget"} == {
        "kubeloop-gateway",
        "kubeloop-stable",
        "kubeloop-canary",
    }
    assert "replicas" not in on.get("Deployment", "kubeloop-stable")["spec"]
    assert not {"HorizontalPodAutoscaler", "PodDisruptionBudget"} & {o["kind"] for o in off.objects}
    assert off.get("Deployment", "kubeloop-stable")["spec"]["replicas"] == 3
    tags = _env(off.get("Deployment", "kubeloop-stable"))["KUBELOOP_MODEL_TAG"]["value"]
    assert tags == "churn:3"
    assert _containers(off.get("Deployment", "kubeloop-gateway"))[0]["command"][-2:] == [
        "--stable",
        "churn:3",
    ]


def test_minimal_install(renders: dict[str, Rendered]) -> None:
    r = renders["minimal"]
    assert {n for k, n in kinds_names(r.objects) if k == "Deployment"} == {
        "kubeloop-gateway",
        "kubeloop-stable",
    }
    assert not any(o["kind"] == "ServiceAccount" for o in r.objects)
    spec = parse_spec(_spec_of(r))
    assert spec.name == "fraud" and spec.features.store_yaml is None
    assert "REDIS_CONNECTION_STRING" not in _env(r.get("Deployment", "kubeloop-gateway"))


# ------------------------------------------------------------------------- network policies


def _policies(r: Rendered) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in r.objects if o["kind"] == "NetworkPolicy"}


def test_default_deny_covers_every_pod_of_the_release(renders: dict[str, Rendered]) -> None:
    for name in ("default", "minimal", "external-redis"):
        r = renders[name]
        deny = _policies(r)["kubeloop-default-deny"]
        assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
        selector = deny["spec"]["podSelector"]["matchLabels"]
        for obj in r.objects:
            if spec := pod_spec(obj):
                labels = (
                    obj["metadata"]["labels"]
                    if obj["kind"] == "Pod"
                    else obj["spec"]["template"]["metadata"]["labels"]
                )
                assert selector.items() <= labels.items(), obj["metadata"]["name"]
                assert spec  # a pod the default deny applies to
    assert _policies(renders["no-networkpolicy"]) == {}


def _allowed_ports(policy: Obj, direction: str) -> set[int]:
    return {p["port"] for rule in policy["spec"].get(direction, []) for p in rule.get("ports", [])}


def test_only_the_needed_flows_are_open(renders: dict[str, Rendered]) -> None:
    p = _policies(renders["default"])
    assert _allowed_ports(p["kubeloop-gateway"], "ingress") == {3000}
    assert _allowed_ports(p["kubeloop-gateway"], "egress") == {3000, 6379, 6566, 53}
    assert _allowed_ports(p["kubeloop-variants"], "ingress") == {3000}
    assert p["kubeloop-variants"]["spec"]["policyTypes"] == ["Ingress"]  # egress: default deny
    assert "ingress" not in p["kubeloop-controller"]["spec"]
    assert _allowed_ports(p["kubeloop-controller"], "egress") == {3000, 9090, 53}
    assert _allowed_ports(p["kubeloop-trigger"], "ingress") == {9095}
    assert _allowed_ports(p["kubeloop-trigger"], "egress") == {8888, 3000, 53}
    assert _allowed_ports(p["kubeloop-redis"], "ingress") == {6379}
    assert _allowed_ports(p["kubeloop-feast"], "ingress") == {6566, 8000}
    variant_peers = p["kubeloop-variants"]["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/component": "gateway"}.items() <= variant_peers[0]["podSelector"][
        "matchLabels"
    ].items()
    object_store = _policies(renders["external-redis"])["kubeloop-gateway"]
    assert 443 in _allowed_ports(object_store, "egress")


# ------------------------------------------------------------------------- monitoring


def test_monitoring_objects_only_behind_their_flags(renders: dict[str, Rendered]) -> None:
    kinds = {o["kind"] for o in renders["default"].objects}
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds
    m = renders["monitoring"]
    assert m.get("ServiceMonitor", "kubeloop")["metadata"]["labels"]["release"] == (
        "kube-prometheus-stack"
    )
    dashboards = [
        o for o in m.objects if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
    ]
    assert dashboards and all(
        d["metadata"]["labels"]["grafana_dashboard"] == "1" for d in dashboards
    )
    for d in dashboards:
        for text in d["data"].values():
            assert json.loads(text)["panels"]


def test_every_alert_is_complete(renders: dict[str, Rendered]) -> None:
    rule = renders["monitoring"].get("PrometheusRule", "kubeloop")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 3
    for a in alerts:
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a["alert"]
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"]), a["alert"]
        anchor = a["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == a["alert"].lower()
    ours = [a for a in alerts if "/helm/README.md#" in a["annotations"]["runbook_url"]]
    assert ours, "the chart's own alerts link to helm/README.md"
    readme = (CHART_DIR.parent / "README.md").read_text().lower()
    missing = [a["alert"] for a in ours if f"### {a['alert'].lower()}" not in readme]
    assert missing == [], "every chart alert needs a runbook section in helm/README.md"


def test_the_packaged_rules_are_rendered_unchanged(renders: dict[str, Rendered]) -> None:
    from kubeloop.serving.monitoring.rules import load_rules

    groups = renders["monitoring"].get("PrometheusRule", "kubeloop")["spec"]["groups"]
    packaged = load_rules()["groups"]
    assert groups[: len(packaged)] == packaged
    assert [g["name"] for g in groups[len(packaged) :]] == ["kubeloop.kubernetes"]


def test_dashboards_use_the_defined_metric_names(renders: dict[str, Rendered]) -> None:
    """Every kubeloop sample name the rendered dashboards select is one the package exposes
    (kubeloop.serving.monitoring.catalog; the packaged rules' names are checked where they
    live, tests/serving/monitoring; tests/k8s/test_dashboards.py checks the JSON itself)."""
    from kubeloop.serving.monitoring.catalog import exposed_names, metric_families

    m = renders["monitoring"]
    dashboards = json.dumps([o["data"] for o in m.objects if o["kind"] == "ConfigMap"])
    used = set(re.findall(r"(?<![a-z_:])kubeloop_[a-z_]+(?![a-z_:])", dashboards))
    defined = exposed_names(metric_families(missing_ok=False))
    assert used and used <= defined, sorted(used - defined)


def test_test_hook_checks_the_gateway(renders: dict[str, Rendered]) -> None:
    pod = renders["default"].get("Pod", "kubeloop-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = _containers(pod)[0]["command"][-1]
    assert "http://kubeloop-gateway:3000" in script and "/readyz" in script


def test_chart_runs_the_serving_image_of_this_version(renders: dict[str, Rendered]) -> None:
    """The image is defined once (components/core/image.py); the chart's default is that."""
    from kubeloop import __version__
    from kubeloop.components.core.image import SERVING_IMAGE

    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    images = {
        c["image"]
        for o in renders["default"].objects
        for c in _containers(o)
        if not c["image"].startswith("docker.io/library/redis")
    }
    assert images == {SERVING_IMAGE}


def test_chart_files_exist() -> None:
    for rel in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/_helpers.tpl"):
        assert (CHART_DIR / rel).is_file(), rel
    assert Path(CHART_DIR / "templates" / "NOTES.txt").is_file()


# ------------------------------------------------------------------------- README examples


def _readme_block(after: str, lang: str = "yaml") -> str:
    text = (CHART_DIR.parent / "README.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_readme_example_values_render_valid_objects() -> None:
    values = yaml.safe_load(_readme_block("A minimal `my-values.yaml`"))
    r = render(values)
    kinds = {o["kind"] for o in r.objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    assert parse_spec(_spec_of(r)).data.entity == "customer_id"
    errors = [msg for o in r.objects if (msg := validate(o, KUBE_VERSIONS[-1]))]
    assert errors == [] and violations(r.objects, PROBE_EXEMPT) == []


def test_readme_gpu_values_are_the_gpu_ci_values() -> None:
    readme = yaml.safe_load(_readme_block("## GPU training values"))
    assert readme["training"] == load_values(CI_FILES["gpu"])["training"]
