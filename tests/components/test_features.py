"""Features stage: Feast definitions, point-in-time joins, online store, pass-through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import DataError, KubeloopError, SpecError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.features.task import FeaturesResult, historical_features, run

T0 = pd.Timestamp("2024-01-01", tz="UTC")
FEATURES = ["tenure_months", "plan", "monthly_charges", "support_tickets"]


def make_spec(workdir: Path, **features: Any) -> Spec:
    return parse_spec(
        {
            "name": "churn",
            "workdir": str(workdir),
            "data": {
                "source": "churn.csv",
                "label": "churned",
                "entity": "customer_id",
                "timestamp": "event_timestamp",
            },
            "features": features,
        }
    )


def churn_frame(customers: int = 30, snapshots: int = 4, seed: int = 0) -> pd.DataFrame:
    """Monthly snapshots per customer, cleaned-looking (no nulls), sorted by time."""
    rng = np.random.default_rng(seed)
    n = customers * snapshots
    cust = np.tile(np.arange(customers), snapshots)
    month = np.repeat(np.arange(snapshots), customers)
    df = pd.DataFrame(
        {
            "customer_id": [f"C{c:04d}" for c in cust],
            "event_timestamp": T0
            + pd.to_timedelta(month * 30, unit="D")
            + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
            "tenure_months": (10 + month + cust % 7).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n).astype(object),
            "monthly_charges": rng.normal(60, 10, n).round(2),
            "support_tickets": rng.integers(0, 4, n).astype("int64"),
            "churned": rng.integers(0, 2, n),
        }
    )
    return df.sort_values("event_timestamp", ignore_index=True)


def write_splits(df: pd.DataFrame, folder: Path) -> dict[str, str]:
    """Time split 60/20/20 written as suffix-less parquet files (like KFP artifacts)."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = int(len(df) * 0.6), int(len(df) * 0.8)
    paths = {}
    for name, part in (("train", df[:a]), ("val", df[a:b]), ("test", df[b:])):
        paths[name] = str(folder / name)
        part.reset_index(drop=True).to_parquet(paths[name], index=False)
    return paths


def run_stage(spec: Spec, paths: dict[str, str], out: Path) -> tuple[FeaturesResult, dict]:
    outs = {s: str(out / s) for s in ("train", "val", "test")}
    result = run(spec, paths["train"], paths["val"], paths["test"], *outs.values())
    return result, {s: pd.read_parquet(p) for s, p in outs.items()}


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full run of the stage on the churn-like data, shared by the tests below."""
    root = tmp_path_factory.mktemp("features")
    df = churn_frame()
    spec = make_spec(root / "work")
    paths = write_splits(df, root / "in")
    result, outs = run_stage(spec, paths, root / "out")
    ins = {s: pd.read_parquet(p) for s, p in paths.items()}
    return {"spec": spec, "df": df, "result": result, "ins": ins, "outs": outs}


def test_join_keeps_rows_order_label_and_values(churn_run: dict[str, Any]) -> None:
    for split, inp in churn_run["ins"].items():
        out = churn_run["outs"][split]
        assert list(out.columns) == list(inp.columns), split
        assert len(out) == len(inp), split
        # Every row is in the offline source at its own timestamp: the point-in-time join
        # must give each row back its own values, label untouched, in the same order.
        pd.testing.assert_frame_equal(out, inp, check_dtype=True)
        assert str(out["event_timestamp"].dt.tz) == "UTC"


def test_result_describes_the_run(churn_run: dict[str, Any]) -> None:
    r: FeaturesResult = churn_run["result"]
    df = churn_run["df"]
    assert r.enabled
    assert r.feature_service == "churn_v1"
    assert r.feature_view == "churn_features"
    assert r.features == FEATURES
    assert (r.train_rows, r.val_rows, r.test_rows) == (72, 24, 24)
    assert r.online_rows == df["customer_id"].nunique()
    until = pd.Timestamp(r.materialized_until)
    assert until == df["event_timestamp"].max() + pd.Timedelta(seconds=1)
    assert r.seconds_historical > 0 and r.seconds_materialize > 0
    FeaturesResult.model_validate_json(r.model_dump_json())  # serializable for KFP


def test_offline_source_has_every_row_but_no_label(churn_run: dict[str, Any]) -> None:
    r = churn_run["result"]
    source = pd.read_parquet(r.source_path)
    assert Path(r.source_path).is_relative_to(churn_run["spec"].workdir)
    assert list(source.columns) == ["customer_id", "event_timestamp", *FEATURES]
    assert len(source) == len(churn_run["df"])


def test_point_in_time_gets_values_as_of_each_timestamp(churn_run: dict[str, Any]) -> None:
    spec, df = churn_run["spec"], churn_run["df"]
    rows = df[df["customer_id"] == "C0003"].sort_values("event_timestamp")
    t1, t2 = rows["event_timestamp"].iloc[0], rows["event_timestamp"].iloc[1]
    entity_df = pd.DataFrame(
        {
            "customer_id": ["C0003", "C0003", "C0003", "nobody", "C0003"],
            "event_timestamp": [
                t1 + (t2 - t1) / 2,  # between t1 and t2: the t1 values, never t2's
                t2,  # exactly at t2: t2's values (as-of is inclusive)
                t1 - pd.Timedelta(days=1),  # before any feature row
                t2,  # unknown entity
                t1 + (t2 - t1) / 2,  # the same request twice stays twice
            ],
            "request_id": [10, 11, 12, 13, 14],
        }
    )
    out = historical_features(spec, entity_df)
    assert list(out["request_id"]) == [10, 11, 12, 13, 14]  # same rows, same order
    first, second = rows.iloc[0], rows.iloc[1]
    for c in FEATURES:
        assert out.loc[0, c] == first[c] and out.loc[4, c] == first[c], c
        assert out.loc[1, c] == second[c], c
    assert first["monthly_charges"] != second["monthly_charges"]
    # Feast's file store drops a known entity whose feature rows are all later: put back.
    assert out.loc[[2, 3], FEATURES].isna().all().all()
    with pytest.raises(DataError, match="no features for 2 of 5 rows"):
        historical_features(spec, entity_df, missing="error")


def test_online_features_latest_values_and_nulls_for_unknown(churn_run: dict[str, Any]) -> None:
    from kubeloop.components.features.task import online_features

    spec, df = churn_run["spec"], churn_run["df"]
    latest = df.sort_values("event_timestamp").groupby("customer_id").tail(1)
    latest = latest.set_index("customer_id")
    got = online_features(spec, ["C0007", "nobody", "C0012"])
    assert list(got["customer_id"]) == ["C0007", "nobody", "C0012"]
    for cid in ("C0007", "C0012"):
        row = got[got["customer_id"] == cid].iloc[0]
        for c in FEATURES:
            assert row[c] == latest.loc[cid, c], (cid, c)
    assert got[got["customer_id"] == "nobody"][FEATURES].isna().all().all()


def test_rerun_replaces_source_and_stays_consistent(
    churn_run: dict[str, Any], tmp_path: Path
) -> None:
    """A second run on new data (same workdir) re-registers and re-materializes."""
    spec = churn_run["spec"]
    df = churn_frame(customers=10, snapshots=3, seed=1)
    result, outs = run_stage(spec, write_splits(df, tmp_path / "in"), tmp_path / "out")
    assert len(pd.read_parquet(result.source_path)) == len(df)
    assert sum(len(o) for o in outs.values()) == len(df)
    assert not list(Path(result.source_path).parent.glob("*.tmp"))


def test_failed_source_write_keeps_old_source_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that dies half-way (disk full) must leave the previous source intact."""
    from kubeloop.components.features.store import source_path

    spec = make_spec(tmp_path / "work")
    paths = write_splits(churn_frame(customers=5), tmp_path / "in")
    src = source_path(spec)
    src.parent.mkdir(parents=True)
    src.write_bytes(b"previous source")

    def half_write(self: pd.DataFrame, path: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"PAR1 half")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_write)
    with pytest.raises(OSError, match="No space"):
        run_stage(spec, paths, tmp_path / "out")
    assert src.read_bytes() == b"previous source"
    assert [p.name for p in src.parent.iterdir()] == [src.name]


def test_disabled_copies_through(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "work", enabled=False)
    paths = write_splits(churn_frame(customers=5), tmp_path / "in")
    result, _ = run_stage(spec, paths, tmp_path / "out")
    assert not result.enabled and "copied through" in result.note
    for s, p in paths.items():
        assert (tmp_path / "out" / s).read_bytes() == Path(p).read_bytes()
    assert not (tmp_path / "work" / "feature_store").exists()


def test_derived_entity_and_naive_timestamps(tmp_path: Path) -> None:
    """No entity/timestamp in the spec: ingest's row_id/ingested_at (one shared, naive
    timestamp) must work; naive timestamps are taken as UTC."""
    spec = parse_spec(
        {
            "name": "houses",
            "workdir": str(tmp_path / "work"),
            "data": {"source": "x.csv", "label": "price"},
        }
    )
    rng = np.random.default_rng(3)
    n = 50
    df = pd.DataFrame(
        {
            "row_id": np.arange(n, dtype="int64"),
            "ingested_at": pd.Timestamp("2024-05-01 12:00:00"),  # tz-naive, all equal
            "rooms": rng.integers(1, 6, n),
            "area": rng.normal(80, 20, n),
            "city": rng.choice(["a", "b"], n).astype(object),
            "price": rng.normal(300, 50, n),
        }
    )
    result, outs = run_stage(spec, write_splits(df, tmp_path / "in"), tmp_path / "out")
    assert result.feature_service == "houses_v1"
    assert result.online_rows == 0 and "row_id" in result.note
    back = pd.concat(outs.values(), ignore_index=True)
    expected = df.assign(ingested_at=df["ingested_at"].dt.tz_localize("UTC"))
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["row_id"].dtype == "int64" and back["rooms"].dtype == "int64"


def test_duplicate_entity_timestamp_pairs_are_rejected(tmp_path: Path) -> None:
    df = churn_frame(customers=5, snapshots=2)
    df.loc[1, ["customer_id", "event_timestamp"]] = df.loc[0, ["customer_id", "event_timestamp"]]
    spec = make_spec(tmp_path / "work")
    with pytest.raises(DataError, match=r"share an \(customer_id, event_timestamp\) pair"):
        run_stage(spec, write_splits(df, tmp_path / "in"), tmp_path / "out")


def test_missing_and_mismatched_columns_are_rejected(tmp_path: Path) -> None:
    df = churn_frame(customers=5, snapshots=2)
    paths = write_splits(df, tmp_path / "in")
    pd.read_parquet(paths["val"]).drop(columns=["churned"]).to_parquet(paths["val"])
    with pytest.raises(DataError, match=r"val split lacks column\(s\) \['churned'\]"):
        run_stage(make_spec(tmp_path / "work"), paths, tmp_path / "out")


def test_online_features_before_any_run_says_what_to_do(tmp_path: Path) -> None:
    from kubeloop.components.features.task import online_features

    with pytest.raises(KubeloopError, match=r"churn_v1.*not registered"):
        online_features(make_spec(tmp_path / "work"), ["C0001"])


def test_store_yaml_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeloop.components.features.store import open_store

    yaml_file = tmp_path / "repo" / "feature_store.yaml"
    yaml_file.parent.mkdir()
    yaml_file.write_text(
        "project: churn\nprovider: local\nregistry: ${KL_TEST_REGISTRY}\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    spec = make_spec(tmp_path / "work", store_yaml=str(yaml_file))
    monkeypatch.delenv("KL_TEST_REGISTRY", raising=False)
    with pytest.raises(SpecError, match="KL_TEST_REGISTRY"):
        open_store(spec)
    monkeypatch.setenv("KL_TEST_REGISTRY", str(tmp_path / "reg.db"))
    store = open_store(spec)
    assert store.config.registry.path == str(tmp_path / "reg.db")
    assert store.config.online_store.type == "sqlite"
    assert store.repo_path == yaml_file.parent.resolve()
    missing = make_spec(tmp_path / "work", store_yaml=str(tmp_path / "nope.yaml"))
    with pytest.raises(SpecError, match=r"features\.store_yaml: file not found"):
        open_store(missing)


def test_local_store_stays_under_workdir(tmp_path: Path) -> None:
    from kubeloop.components.features.store import local_config

    cfg = local_config(make_spec(tmp_path / "work"))
    root = (tmp_path / "work" / "feature_store").resolve()
    assert cfg.project == "churn"
    assert Path(cfg.registry.path).parent == root
    assert Path(cfg.online_store.path).parent == root
    assert cfg.entity_key_serialization_version == 3


def test_definitions_types_follow_the_data(tmp_path: Path) -> None:
    from feast import ValueType
    from feast.types import Float64, Int64, String

    from kubeloop.components.core.schema import feature_kinds
    from kubeloop.components.features.definitions import build

    df = churn_frame(customers=3, snapshots=1)
    spec = make_spec(tmp_path)
    defs = build(spec, "/x.parquet", feature_kinds(df, spec), dtypes=df.dtypes.to_dict())
    types = {f.name: f.dtype for f in defs.view.schema}
    assert types == {
        "tenure_months": Float64,
        "plan": String,
        "monthly_charges": Float64,
        "support_tickets": Int64,
    }
    assert defs.entity.join_key == "customer_id"
    assert defs.entity.value_type == ValueType.STRING
    assert defs.view.ttl is not None and defs.view.ttl.days == 3650
    assert defs.source.timestamp_field == "event_timestamp"
    assert defs.service.name == "churn_v1"

    ints = df.assign(customer_id=np.arange(len(df), dtype="int64"))
    assert build(spec, "/x", {}, dtypes=ints.dtypes.to_dict()).entity.value_type == ValueType.INT64
    floats = df.assign(customer_id=np.arange(len(df), dtype="float64"))
    with pytest.raises(DataError, match=r"data\.entity: column 'customer_id' has dtype float64"):
        build(spec, "/x", {}, dtypes=floats.dtypes.to_dict())


def test_task_import_is_cheap() -> None:
    code = (
        "import sys, kubeloop.components.features.task\n"
        "heavy = [m for m in ('pandas', 'feast', 'numpy', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
