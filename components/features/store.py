"""Opening the Feast feature store: a user's feature_store.yaml, or a local one under workdir."""

from __future__ import annotations

import os
import re
from pathlib import Path

from feast import FeatureStore
from feast.repo_config import FeastConfigError, RepoConfig

from kubeloop.components.core.errors import SpecError
from kubeloop.components.core.spec import Spec

_VAR_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def store_dir(spec: Spec) -> Path:
    """Local feature-store state: registry, online SQLite db and the offline source data."""
    return Path(spec.workdir) / "feature_store"


def source_path(spec: Spec) -> Path:
    """The offline source parquet the features stage writes and the file source reads."""
    return store_dir(spec) / "data" / f"{spec.name}_source.parquet"


def local_config(spec: Spec) -> RepoConfig:
    """SQLite online store + file (dask) offline store + file registry, all under workdir."""
    root = store_dir(spec).resolve()
    return RepoConfig(
        project=spec.name,
        provider="local",
        registry=str(root / "registry.db"),
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        offline_store={"type": "file"},
        # 3 is the default and the only non-deprecated value in Feast 0.67.
        entity_key_serialization_version=3,
        repo_path=root,
    )


def open_store(spec: Spec) -> FeatureStore:
    """The project's feature store. With `features.store_yaml`, Feast reads that file
    (`${VAR}` placeholders are expanded from the environment by Feast itself) and relative
    paths in it resolve against its folder; otherwise a local store under workdir."""
    yaml_path = spec.features.store_yaml
    if yaml_path:
        p = Path(yaml_path)
        if not p.is_file():
            raise SpecError(f"features.store_yaml: file not found: {p}")
        # Feast uses os.path.expandvars, which silently leaves unset variables in place
        # (and knows no `${VAR:-default}`): name them here instead of a confusing error later.
        lines = [ln for ln in p.read_text().splitlines() if not ln.lstrip().startswith("#")]
        unset = sorted(set(_VAR_REF.findall(os.path.expandvars("\n".join(lines)))))
        if unset:
            raise SpecError(
                f"features.store_yaml: {p} uses environment variable(s) {unset} that are not set"
            )
        try:
            return FeatureStore(repo_path=str(p.parent.resolve()), fs_yaml_file=p.resolve())
        except FeastConfigError as err:
            raise SpecError(f"features.store_yaml: {err}") from None
    store_dir(spec).mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=local_config(spec))
