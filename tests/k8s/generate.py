"""Generate what must not drift: the spec part of the chart's values schema, the chart's
Grafana dashboards and k8s/base.

    python -m tests.k8s.generate          # rewrite both
    python -m tests.k8s.generate --check  # exit 1 when a checked-in copy differs

* ``helm/kubeloop/values.schema.json``: the ``$defs`` of the project spec (``Spec`` and its
  sections) come from the pydantic model, so `helm install` rejects what `kubeloop` would.
  The hand-written chart definitions (``chart*``) and properties are kept as they are.
* ``helm/kubeloop/dashboards/*.json``: built by :mod:`tests.k8s.dashboards` from the metric
  names the package defines.
* ``k8s/base``: the chart rendered with ``k8s/base/values.yaml`` (one file per object) and
  ``k8s/base/monitoring`` (a kustomize Component: ServiceMonitor, PrometheusRule, dashboards).
  Helm-only metadata is replaced: ``managed-by: kustomize``, no ``helm.sh/chart`` label.
  It includes ``serving/monitoring/rules.yaml`` (the chart reads it through the symlink
  ``helm/kubeloop/files/prometheus-rules.yaml``), so a rules change needs a regeneration too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from kubeloop.components.core.io import write_text_atomic
from tests.k8s.chart import BASE_DIR, CHART_DIR, Obj, is_hook, load_values, render
from tests.k8s.dashboards import dashboard_files

SCHEMA_PATH = CHART_DIR / "values.schema.json"
BASE_VALUES = BASE_DIR / "values.yaml"
MONITORING_DIR = BASE_DIR / "monitoring"
HEADER = (
    "# generated from helm/kubeloop by `python -m tests.k8s.generate` (values: {values}) "
    "- do not edit\n"
)
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}


def generated_schema(current: dict[str, Any]) -> dict[str, Any]:
    """``current`` with the Spec definitions replaced by the pydantic model's."""
    from kubeloop.components.core.spec import Spec

    spec_schema = Spec.model_json_schema()
    spec_defs = spec_schema.pop("$defs")
    chart_defs = {k: v for k, v in current.get("$defs", {}).items() if k.startswith("chart")}
    clash = sorted(set(chart_defs) & set(spec_defs))
    if clash:
        raise ValueError(f"values.schema.json: $defs {clash} are both chart and spec definitions")
    out = dict(current)
    out["$defs"] = {**chart_defs, **dict(sorted(spec_defs.items())), "Spec": spec_schema}
    return out


def schema_text() -> str:
    current = json.loads(SCHEMA_PATH.read_text())
    return json.dumps(generated_schema(current), indent=2) + "\n"


def _for_kustomize(obj: Obj) -> Obj:
    """Helm-only metadata out; labels say who manages the objects now."""

    def fix(labels: dict[str, str] | None) -> None:
        if labels is None:
            return
        labels.pop("helm.sh/chart", None)
        if "app.kubernetes.io/managed-by" in labels:
            labels["app.kubernetes.io/managed-by"] = "kustomize"

    fix(obj["metadata"].get("labels"))
    template = obj.get("spec", {}).get("template", {})
    if isinstance(template, dict) and "metadata" in template:
        fix(template["metadata"].get("labels"))
    return obj


def _dump(obj: Obj, values: str) -> str:
    return HEADER.format(values=values) + yaml.safe_dump(obj, sort_keys=False)


def _file_name(obj: Obj) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def _kustomization(api_version: str, kind: str, files: list[str], values: str) -> str:
    return _dump({"apiVersion": api_version, "kind": kind, "resources": files}, values)


def base_files() -> dict[Path, str]:
    """Every file under k8s/base the chart produces (values.yaml itself is hand-written)."""
    values = load_values(BASE_VALUES)
    rel = "k8s/base/values.yaml"
    objects = [o for o in render(values).objects if not is_hook(o)]
    main = sorted((o for o in objects if not _is_monitoring(o)), key=_file_name)
    monitoring_values = {
        **values,
        "serviceMonitor": {**values.get("serviceMonitor", {}), "enabled": True},
        "prometheusRule": {**values.get("prometheusRule", {}), "enabled": True},
        "dashboards": {**values.get("dashboards", {}), "enabled": True},
    }
    monitoring = sorted(
        (o for o in render(monitoring_values).objects if _is_monitoring(o)), key=_file_name
    )
    files: dict[Path, str] = {}
    for o in main:
        files[BASE_DIR / _file_name(o)] = _dump(_for_kustomize(o), rel)
    files[BASE_DIR / "kustomization.yaml"] = _kustomization(
        "kustomize.config.k8s.io/v1beta1", "Kustomization", [_file_name(o) for o in main], rel
    )
    mrel = rel + " + serviceMonitor, prometheusRule, dashboards enabled"
    for o in monitoring:
        files[MONITORING_DIR / _file_name(o)] = _dump(_for_kustomize(o), mrel)
    files[MONITORING_DIR / "kustomization.yaml"] = _kustomization(
        "kustomize.config.k8s.io/v1alpha1", "Component", [_file_name(o) for o in monitoring], mrel
    )
    return files


def _is_monitoring(obj: Obj) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return obj["kind"] in MONITORING_KINDS or "grafana_dashboard" in labels


def stale_base_files() -> list[Path]:
    """Generated files under k8s/base that the chart no longer produces."""
    wanted = set(base_files())
    return sorted(
        p
        for d in (BASE_DIR, MONITORING_DIR)
        for p in d.glob("*.yaml")
        if p not in wanted and p != BASE_VALUES
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare; write nothing")
    args = parser.parse_args(argv)
    schema = schema_text()
    if args.check:
        expected = {SCHEMA_PATH: schema, **dashboard_files(), **base_files()}
        stale = stale_base_files()
        differ = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
        for p in [*differ, *stale]:
            print(f"out of date: {p.relative_to(CHART_DIR.parents[1])}", file=sys.stderr)
        if differ or stale:
            print("run: python -m tests.k8s.generate", file=sys.stderr)
            return 1
        return 0
    # The schema and dashboards first: rendering the base validates its values against the
    # schema and reads the dashboards.
    write_text_atomic(SCHEMA_PATH, schema)
    for p, text in dashboard_files().items():
        write_text_atomic(p, text)
        print(f"wrote {p.relative_to(CHART_DIR.parents[1])}")
    expected = base_files()
    for p in stale_base_files():
        p.unlink()
    for p, text in expected.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(p, text)
        print(f"wrote {p.relative_to(CHART_DIR.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
