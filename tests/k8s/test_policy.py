"""The policy checks catch what they are for: each rule flags a workload that breaks it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.k8s.chart import Obj
from tests.k8s.policy import (
    no_plain_secrets,
    pinned_images,
    pod_security,
    probes,
    rbac,
    read_only_root,
    resources,
    violations,
)

pytestmark = pytest.mark.xdist_group("k8s")

SECURE_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def good_deployment() -> Obj:
    container = {
        "name": "app",
        "image": "ghcr.io/kubeloop/kubeloop-serving:0.1.0",
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "128Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/livez", "port": 3000}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 3000}},
        "securityContext": copy.deepcopy(SECURE_CONTAINER),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            }
        },
    }


def _pod(obj: Obj) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _container(obj: Obj) -> dict[str, Any]:
    c: dict[str, Any] = _pod(obj)["containers"][0]
    return c


def test_a_compliant_deployment_passes() -> None:
    assert violations([good_deployment()]) == []


Breaker = Callable[[Obj], None]
CASES: list[tuple[str, Breaker, Callable[[Obj], list[str]], str]] = [
    (
        "root",
        lambda o: _container(o)["securityContext"].update(runAsNonRoot=False),
        pod_security,
        "runAsNonRoot",
    ),
    (
        "escalation",
        lambda o: _container(o)["securityContext"].pop("allowPrivilegeEscalation"),
        pod_security,
        "allowPrivilegeEscalation",
    ),
    (
        "capabilities",
        lambda o: _container(o)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        pod_security,
        "drop ALL",
    ),
    (
        "seccomp",
        lambda o: _container(o)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        pod_security,
        "seccompProfile",
    ),
    (
        "hostPath",
        lambda o: _pod(o)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        pod_security,
        "hostPath",
    ),
    ("hostNetwork", lambda o: _pod(o).update(hostNetwork=True), pod_security, "hostNetwork"),
    (
        "writable root",
        lambda o: _container(o)["securityContext"].pop("readOnlyRootFilesystem"),
        read_only_root,
        "readOnlyRootFilesystem",
    ),
    (
        "no limits",
        lambda o: _container(o)["resources"].pop("limits"),
        resources,
        "no limits",
    ),
    (
        "no memory request",
        lambda o: _container(o)["resources"]["requests"].pop("memory"),
        resources,
        "memory",
    ),
    ("no liveness", lambda o: _container(o).pop("livenessProbe"), probes, "livenessProbe"),
    ("no readiness", lambda o: _container(o).pop("readinessProbe"), probes, "readinessProbe"),
    ("latest", lambda o: _container(o).update(image="redis:latest"), pinned_images, "latest"),
    ("untagged", lambda o: _container(o).update(image="ghcr.io/x/redis"), pinned_images, "no tag"),
    (
        "secret env",
        lambda o: _container(o)["env"].append({"name": "DB_PASSWORD", "value": "hunter2"}),
        no_plain_secrets,
        "DB_PASSWORD",
    ),
    (
        "secret in a URL",
        lambda o: _container(o)["env"].append({"name": "DB", "value": "postgres://u:pw@db/x"}),
        no_plain_secrets,
        "DB",
    ),
]


@pytest.mark.parametrize(("case", "breaker", "check", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_flags_its_violation(
    case: str, breaker: Breaker, check: Callable[[Obj], list[str]], words: str
) -> None:
    obj = good_deployment()
    assert check(obj) == []
    breaker(obj)
    found = check(obj)
    assert found and words in found[0], (case, found)
    assert violations([obj])  # the full run reports it too


def test_pinned_by_digest_is_fine() -> None:
    obj = good_deployment()
    _container(obj)["image"] = "ghcr.io/x/redis@sha256:" + "a" * 64
    assert pinned_images(obj) == []


def test_configmaps_carry_no_secrets() -> None:
    def cm(text: str) -> Obj:
        return {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"kubeloop.yaml": text}}

    assert no_plain_secrets(cm("serve:\n  admin_token_env: KUBELOOP_ADMIN_TOKEN\n")) == []
    assert no_plain_secrets(cm("store:\n  password: ${REDIS_PASSWORD}\n")) == []
    assert no_plain_secrets(cm("store:\n  password: hunter2\n"))
    assert no_plain_secrets(cm("online_store:\n  connection_string: r:6379,password=hunter2\n"))
    assert no_plain_secrets(cm("key: |\n  -----BEGIN RSA PRIVATE KEY-----\n  abc\n"))


def test_rbac_wildcards_and_cluster_admin_are_flagged() -> None:
    role: Obj = {
        "kind": "Role",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    assert rbac(role) == []
    role["rules"].append({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]})
    assert rbac(role) == ["Role/r: rules[1].resources has a wildcard"]
    binding: Obj = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "app"}],
    }
    assert rbac(binding) == ["ClusterRoleBinding/b: binds cluster-admin"]


def test_token_mounted_only_for_api_clients() -> None:
    obj = good_deployment()
    del _pod(obj)["automountServiceAccountToken"]
    _pod(obj)["serviceAccountName"] = "app"
    assert any("mounts the token" in v for v in violations([obj]))
    binding: Obj = {
        "kind": "RoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "app"}],
    }
    assert not any("mounts the token" in v for v in violations([obj, binding]))
    sa: Obj = {"kind": "ServiceAccount", "metadata": {"name": "idle"}}
    assert violations([sa]) == ["ServiceAccount/idle: automountServiceAccountToken is not false"]


def test_probe_exemption_is_by_name() -> None:
    obj = good_deployment()
    _container(obj).pop("livenessProbe")
    assert probes(obj, {"Deployment/app": "no port"}) == []
    assert probes(obj, {"Deployment/other": "no port"})
