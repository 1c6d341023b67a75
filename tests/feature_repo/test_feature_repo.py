"""feature_repo/ (the Feast repo a user `feast apply`s) loads, works, and declares exactly
what the kubeloop features stage registers for the churn demo, so the two never drift."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from kubeloop.components.core.spec import Spec, load_spec

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
REPO_MODULES = ("entities", "sources", "views", "services")


@pytest.fixture(scope="module")
def repo_contents() -> Any:
    """The repo's objects, parsed the way `feast apply` does: each file imported as a
    module named after its path from the working directory, with the repo on sys.path."""
    from feast.repo_operations import parse_repo

    cwd, path = os.getcwd(), list(sys.path)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    try:
        return parse_repo(REPO)
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        for name in REPO_MODULES:  # generic names: keep them out of other tests' way
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def pipeline_run(
    churn_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Spec, Path]:
    """The demo through ingest → split → clean → features: what the pipeline registers."""
    from kubeloop.components.clean.task import run as clean
    from kubeloop.components.features.task import run as features
    from kubeloop.components.ingest.task import run as ingest
    from kubeloop.components.split.task import run as split

    tmp = tmp_path_factory.mktemp("demo_features")
    spec = load_spec(churn_demo_dir / "kubeloop.yaml")
    spec = spec.model_copy(update={"workdir": str(tmp / ".kubeloop")})
    splits = ("train", "val", "test")
    ingest(spec, str(tmp / "ingested"), str(tmp / "audit.json"))
    split(spec, str(tmp / "ingested"), *(str(tmp / f"split_{s}") for s in splits))
    clean(
        spec,
        *(str(tmp / f"split_{s}") for s in splits),
        *(str(tmp / f"clean_{s}") for s in splits),
        str(tmp / "params.json"),
        str(tmp / "clean_audit.json"),
    )
    result = features(
        spec,
        *(str(tmp / f"clean_{s}") for s in splits),
        *(str(tmp / f"features_{s}") for s in splits),
    )
    assert result.source_path is not None
    return spec, Path(result.source_path)


def test_repo_declares_one_entity_source_view_and_service(repo_contents: Any) -> None:
    # parse_repo adds Feast's own `__dummy` entity (for entity-less views): not ours.
    assert [e.name for e in repo_contents.entities if not e.name.startswith("__")] == [
        "customer_id"
    ]
    assert [s.name for s in repo_contents.data_sources] == ["churn_source"]
    assert [v.name for v in repo_contents.feature_views] == ["churn_features"]
    assert [s.name for s in repo_contents.feature_services] == ["churn_v1"]


def test_repo_agrees_with_what_the_pipeline_registers(
    repo_contents: Any, pipeline_run: tuple[Spec, Path]
) -> None:
    from kubeloop.components.features.store import open_store

    spec, _ = pipeline_run
    store = open_store(spec)
    view = store.get_feature_view("churn_features")
    repo_view = repo_contents.feature_views[0]
    assert [(f.name, f.dtype) for f in view.features] == [
        (f.name, f.dtype) for f in repo_view.features
    ]
    assert view.entities == repo_view.entities == ["customer_id"]
    assert view.ttl == repo_view.ttl
    assert view.batch_source.timestamp_field == repo_view.batch_source.timestamp_field
    assert view.batch_source.name == repo_view.batch_source.name
    repo_entity = next(e for e in repo_contents.entities if e.name == "customer_id")
    entity = store.get_entity("customer_id")
    assert (entity.join_key, entity.value_type) == (repo_entity.join_key, repo_entity.value_type)
    service = store.get_feature_service(spec.feature_service)
    assert service.name == repo_contents.feature_services[0].name == "churn_v1"
    assert [p.name for p in service.feature_view_projections] == ["churn_features"]


def test_local_yaml_applies_and_serves_the_stage_output(
    repo_contents: Any, pipeline_run: tuple[Spec, Path], tmp_path: Path
) -> None:
    """As the README says: copy the stage's source parquet to data/, `feast apply`, query."""
    from feast import FeatureStore

    _, source = pipeline_run
    shutil.copy(REPO / "feature_store.yaml", tmp_path / "feature_store.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(source, tmp_path / "data" / "churn_source.parquet")
    store = FeatureStore(repo_path=str(tmp_path))  # relative paths → tmp_path/data
    assert store.project == "churn"
    store.apply(
        [
            *(e for e in repo_contents.entities if not e.name.startswith("__")),
            *repo_contents.data_sources,
            *repo_contents.feature_views,
            *repo_contents.feature_services,
        ]
    )
    rows = pd.read_parquet(source).sort_values("event_timestamp").tail(5)
    service = store.get_feature_service("churn_v1")
    entity_df = rows[["customer_id", "event_timestamp"]].reset_index(drop=True)
    got = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    got = got.set_index("customer_id").loc[rows["customer_id"]]
    feature_names = [f.name for f in repo_contents.feature_views[0].features]
    pd.testing.assert_frame_equal(
        got[feature_names].reset_index(drop=True),
        rows[feature_names].reset_index(drop=True),
        check_dtype=False,
    )
    ts = rows["event_timestamp"]
    store.materialize(ts.min().to_pydatetime(), ts.max().to_pydatetime() + pd.Timedelta("1s"))
    online = store.get_online_features(
        features=service, entity_rows=[{"customer_id": rows["customer_id"].iloc[-1]}]
    ).to_dict()
    assert online["monthly_charges"] == [rows["monthly_charges"].iloc[-1]]
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["online_store.db", "registry.db"]


def test_cluster_yaml_takes_everything_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEAST_REGISTRY_PATH", "s3://mlops/feast/churn/registry.db")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "redis-master.feast:6379,password=s3cret")
    path = REPO / "feature_store.cluster.yaml"
    text = path.read_text()
    assert "s3cret" not in text and "${REDIS_CONNECTION_STRING}" in text
    # What Feast's load_repo_config does before building the config objects.
    raw = yaml.safe_load(os.path.expandvars(text))
    assert raw["project"] == "churn"
    assert raw["registry"]["path"] == "s3://mlops/feast/churn/registry.db"
    assert raw["online_store"] == {
        "type": "redis",
        "connection_string": "redis-master.feast:6379,password=s3cret",
    }
    assert raw["offline_store"] == {"type": "file"}
    if importlib.util.find_spec("redis") is not None:  # feast[redis]: the cluster image
        from feast.repo_config import load_repo_config

        cfg = load_repo_config(REPO, path)
        assert cfg.online_store.connection_string == raw["online_store"]["connection_string"]
        assert cfg.registry.path == raw["registry"]["path"]


def test_cluster_yaml_names_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeloop.components.core.errors import SpecError
    from kubeloop.components.core.spec import parse_spec
    from kubeloop.components.features.store import open_store

    monkeypatch.delenv("FEAST_REGISTRY_PATH", raising=False)
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "localhost:6379")
    spec = parse_spec(
        {
            "name": "churn",
            "data": {"source": "churn.csv", "label": "churned"},
            "features": {"store_yaml": str(REPO / "feature_store.cluster.yaml")},
        }
    )
    with pytest.raises(SpecError, match=r"\['FEAST_REGISTRY_PATH'\]"):
        open_store(spec)
