"""The Helm chart and the kustomize tree, rendered offline for tests and the generator.

Rendering goes through the real Helm v4 SDK (``helm_python``); kustomize through
``kubectl kustomize``. Nothing here talks to a cluster.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "kubeloop"
CI_DIR = CHART_DIR / "ci"
K8S_DIR = REPO / "k8s"
BASE_DIR = K8S_DIR / "base"
OVERLAYS = ("dev", "prod")
RELEASE = "kubeloop"
NAMESPACE = "kubeloop"
# The oldest Kubernetes minor the chart supports (Chart.yaml kubeVersion) and the newest the
# bundled kubernetes-validate schemas know: objects must be valid on both.
KUBE_VERSIONS = ("1.27", "1.37")
# The canary controller serves no port, so it has no probes (helm/README.md says why).
PROBE_EXEMPT = {"Deployment/kubeloop-controller": "no port; a failed loop exits"}

Obj = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: objects per template path, and NOTES.txt."""

    by_template: dict[str, list[Obj]]
    notes: str

    @property
    def objects(self) -> list[Obj]:
        return [o for objs in self.by_template.values() for o in objs]

    def get(self, kind: str, name: str) -> Obj:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name} not rendered; have {sorted(kinds_names(self.objects))}")


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of values")
    return values


def ci_values_files() -> list[Path]:
    return sorted(CI_DIR.glob("*-values.yaml"))


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> Rendered:
    """Render the chart as `helm template` would (values are checked against the schema)."""
    import helm_python as helm

    with helm.Chart.load(CHART_DIR) as chart:
        out = chart.render(values=values, name=release, namespace=NAMESPACE, is_install=True)
    by_template: dict[str, list[Obj]] = {}
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        by_template[path] = [d for d in yaml.safe_load_all(text) if d]
    return Rendered(by_template=by_template, notes=notes)


def kustomize(path: Path) -> list[Obj]:
    """`kubectl kustomize PATH` as objects."""
    proc = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def kinds_names(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def is_hook(obj: Obj) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})
