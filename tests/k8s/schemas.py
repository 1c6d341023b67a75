"""Strict schema validation of Kubernetes objects, built-in kinds and Prometheus Operator CRDs.

Built-in kinds are checked against the strict schemas bundled with ``kubernetes-validate``
(unknown fields are errors), exactly as ``kubernetes_validate.validate(obj, v, strict=True)``
does; the schemas and their shared definitions are loaded once per version here, because that
function re-reads the 1.4 MB definitions file on every call. Custom resources go through the
``openAPIV3Schema`` of their CRD (from ``$KUBELOOP_CRD_DIR``, ``../shared/k8s-crds``, else
``crds/`` here), made strict the same way: every object schema that lists its properties gets
``additionalProperties: false``, which is what the API server's strict field validation does
for a structural schema.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.k8s.chart import REPO, Obj

# $KUBELOOP_CRD_DIR, else the workspace's shared copy, else the one kept beside this file.
_SHARED_CRDS = REPO.parent / "shared" / "k8s-crds"
CRD_DIR = Path(
    os.environ.get("KUBELOOP_CRD_DIR")
    or (_SHARED_CRDS if _SHARED_CRDS.is_dir() else Path(__file__).with_name("crds"))
)


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every CRD version in CRD_DIR."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                out[(f"{group}/{version['name']}", kind)] = _strict(schema)
    if not out:
        raise FileNotFoundError(
            f"no CustomResourceDefinition in {CRD_DIR}: point $KUBELOOP_CRD_DIR at the "
            "Prometheus Operator CRDs (the shared k8s-crds folder)"
        )
    return out


@functools.cache
def _builtin_validator(kube_version: str, api_version: str, kind: str) -> Any:
    """A Draft 2020-12 validator for one built-in kind, as kubernetes_validate builds it."""
    import re

    import referencing
    from kubernetes_validate import utils

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= kube_version][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group}.json", kube_version)
    except FileNotFoundError:
        return None
    # Resources register under their own $id (the definitions: /api/_definitions.json).
    registry: referencing.Registry[Any] = referencing.Resource.from_contents(schema) @ (
        _definitions(schema_dir, kube_version) @ referencing.Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(schema_dir: str, kube_version: str) -> Any:
    import referencing
    from kubernetes_validate import utils

    return referencing.Resource.from_contents(
        utils.schema_contents(f"{schema_dir}/_definitions.json", kube_version)
    )


def validate(obj: Obj, kube_version: str) -> str | None:
    """None when ``obj`` is valid for ``kube_version``, else a message naming the field."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    crd = crd_schemas().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if crd is not None:
        errors = sorted(
            jsonschema.Draft7Validator(crd).iter_errors(obj), key=lambda e: list(e.path)
        )
        if errors:
            e = errors[0]
            return f"{where}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}"
        return None
    validator = _builtin_validator(kube_version, obj.get("apiVersion", ""), obj.get("kind", ""))
    if validator is None:
        return f"{where}: no schema for {obj.get('apiVersion')} in Kubernetes {kube_version}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        path = ".".join(map(str, error.path)) or "(root)"
        return f"{where} (Kubernetes {kube_version}): {path}: {error.message}"
    return None
