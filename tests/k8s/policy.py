"""Policy checks over rendered Kubernetes objects; each returns human-readable violations.

The rules (issue "Kubernetes delivery"): Pod Security Standards *restricted*, read-only root
filesystem, requests and limits, liveness and readiness probes, pinned image tags, no secrets
in env values or ConfigMaps, RBAC without wildcards or cluster-admin, and no service-account
token in pods that do not talk to the Kubernetes API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.k8s.chart import Obj

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Long-running workloads need probes; Jobs and bare Pods (helm test hooks) run to completion.
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Env var / config key names that hold secrets when they hold a value.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|api[_-]?key|credentials?)$", re.I)
# Values that are secrets whatever their key is called.
SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|password=(?!\$\()[^,\s]+|://[^/\s:@]+:[^/\s@$]+@"
)
ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$")

Check = Callable[[Obj], list[str]]


def _name(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(obj: Obj) -> dict[str, Any] | None:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] in WORKLOAD_KINDS:
        return dict(obj["spec"]["template"]["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c['name']}]", c


def pod_security(obj: Obj) -> list[str]:
    """Pod Security Standards, restricted profile (baseline included)."""
    spec = pod_spec(obj)
    if spec is None:
        return []
    out: list[str] = []
    where = _name(obj)
    psc = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            out.append(f"{where}: {host} is set")
    for v in spec.get("volumes") or []:
        kind = next(k for k in v if k != "name")
        if kind not in ALLOWED_VOLUMES:
            out.append(f"{where}: volume {v['name']} of type {kind} is not allowed")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for label, c in _containers(spec):
        csc = c.get("securityContext") or {}
        at = f"{where} {label}"
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{at}: runAsNonRoot is not true")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{at}: runs as user 0")
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{at}: allowPrivilegeEscalation is not false")
        if csc.get("privileged"):
            out.append(f"{at}: privileged")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{at}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{at}: adds capabilities {caps['add']}")
        seccomp = (csc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{at}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{at}: uses a hostPort")
    return out


def read_only_root(obj: Obj) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [
        f"{_name(obj)} {label}: readOnlyRootFilesystem is not true"
        for label, c in _containers(spec)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]


def resources(obj: Obj) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    out = []
    for label, c in _containers(spec):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (res.get(kind) or {})]
            if missing:
                out.append(f"{_name(obj)} {label}: no {kind} for {', '.join(missing)}")
    return out


def probes(obj: Obj, exempt: dict[str, str] | None = None) -> list[str]:
    """Liveness and readiness probes on long-running containers; ``exempt`` maps a
    ``Kind/name`` to the documented reason it has none."""
    spec = pod_spec(obj)
    if spec is None or obj["kind"] not in LONG_RUNNING or _name(obj) in (exempt or {}):
        return []
    return [
        f"{_name(obj)} {label}: no {probe}"
        for label, c in _containers(spec)
        if label.startswith("containers")
        for probe in ("livenessProbe", "readinessProbe")
        if probe not in c
    ]


def pinned_images(obj: Obj) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    out = []
    for label, c in _containers(spec):
        image = str(c.get("image", ""))
        name, _, digest = image.partition("@")
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
        if not digest and not tag:
            out.append(f"{_name(obj)} {label}: image {image!r} has no tag")
        elif tag == "latest":
            out.append(f"{_name(obj)} {label}: image {image!r} uses the latest tag")
    return out


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, node


def no_plain_secrets(obj: Obj) -> list[str]:
    """Secrets come by reference (secretKeyRef), never as env values or ConfigMap data."""
    import yaml

    out: list[str] = []
    spec = pod_spec(obj)
    if spec is not None:
        for label, c in _containers(spec):
            for env in c.get("env") or []:
                value = env.get("value")
                if value is None:
                    continue
                if SECRET_NAME.search(env["name"]) or SECRET_VALUE.search(str(value)):
                    out.append(f"{_name(obj)} {label}: env {env['name']} holds a literal value")
    if obj["kind"] == "ConfigMap":
        for key, text in (obj.get("data") or {}).items():
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = text
            for path, value in _leaves(parsed, key):
                leaf = path.rsplit(".", 1)[-1]
                literal = isinstance(value, str) and value and not ENV_REFERENCE.match(value)
                if (SECRET_NAME.search(leaf) and literal) or SECRET_VALUE.search(str(value)):
                    out.append(f"{_name(obj)}: {path} looks like a secret")
    return out


def rbac(obj: Obj) -> list[str]:
    out = []
    if obj["kind"] in ("Role", "ClusterRole"):
        for i, rule in enumerate(obj.get("rules") or []):
            for field in ("verbs", "resources", "apiGroups", "nonResourceURLs"):
                if "*" in (rule.get(field) or []):
                    out.append(f"{_name(obj)}: rules[{i}].{field} has a wildcard")
    if obj["kind"] in ("RoleBinding", "ClusterRoleBinding") and obj["roleRef"]["name"] in (
        "cluster-admin",
        "admin",
        "edit",
    ):
        out.append(f"{_name(obj)}: binds {obj['roleRef']['name']}")
    return out


def api_clients(objects: list[Obj]) -> set[str]:
    """ServiceAccounts some (Cluster)RoleBinding grants API access to."""
    return {
        s["name"]
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in o.get("subjects") or []
        if s.get("kind") == "ServiceAccount"
    }


def service_account_token(obj: Obj, api_clients: set[str]) -> list[str]:
    """A pod whose ServiceAccount is bound to no Role must not mount a token."""
    spec = pod_spec(obj)
    if spec is None:
        return []
    sa = spec.get("serviceAccountName", "default")
    if sa in api_clients or spec.get("automountServiceAccountToken") is False:
        return []
    return [f"{_name(obj)}: mounts the token of ServiceAccount {sa}, which needs no API access"]


def violations(objects: list[Obj], probe_exempt: dict[str, str] | None = None) -> list[str]:
    """Every rule over every object."""
    clients = api_clients(objects)
    checks: list[Check] = [pod_security, read_only_root, resources, pinned_images, rbac]
    checks.append(no_plain_secrets)
    out: list[str] = []
    for obj in objects:
        for check in checks:
            out += check(obj)
        out += probes(obj, probe_exempt)
        out += service_account_token(obj, clients)
        if (
            obj["kind"] == "ServiceAccount"
            and obj["metadata"]["name"] not in clients
            and obj.get("automountServiceAccountToken") is not False
        ):
            out.append(f"{_name(obj)}: automountServiceAccountToken is not false")
    return out
