from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.clean.task import MISSING_TOKEN, CleanParams, apply, fit, run
from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.split.task import run as split_run


@pytest.fixture
def splits(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> list[str]:
    paths = [str(tmp_path / f"{s}.parquet") for s in ("train", "val", "test")]
    split_run(churn_spec, str(churn_ingested), *paths)
    return paths


def _clean(spec: Spec, splits: list[str], out: Path):
    outs = [str(out / f"c_{s}.parquet") for s in ("train", "val", "test")]
    result = run(spec, *splits, *outs, str(out / "params.json"), str(out / "audit.json"))
    return result, [pd.read_parquet(p) for p in outs]


def test_clean_churn_splits(churn_spec: Spec, splits: list[str], tmp_path: Path) -> None:
    result, frames = _clean(churn_spec, splits, tmp_path)
    params = CleanParams.model_validate_json((tmp_path / "params.json").read_text())
    assert json.loads((tmp_path / "audit.json").read_text()) == result.counts
    for name, frame in zip(("train", "val", "test"), frames, strict=True):
        assert not frame[list(params.kinds)].isna().any().any(), name
        assert (frame["tenure_months"] >= 0).all() and (frame["monthly_charges"] < 1000).all()
        assert list(frame.columns) == list(pd.read_parquet(splits[0]).columns)
    train_counts = result.counts["train"]
    assert train_counts["impossible_values"] > 0 and train_counts["imputed_numeric"] > 0
    assert train_counts["bot_rows"] > 0 and result.counts["test"]["bot_rows"] == 0
    assert result.rows["train"] == len(pd.read_parquet(splits[0])) - train_counts["bot_rows"]


def test_params_are_fitted_on_train_only(
    churn_spec: Spec, splits: list[str], tmp_path: Path
) -> None:
    _clean(churn_spec, splits, tmp_path / "a")
    # Wreck val and test: the fitted parameters must not move.
    for path in splits[1:]:
        df = pd.read_parquet(path)
        df["monthly_charges"] = 999.0
        df["data_usage_gb"] = np.nan
        df["region"] = "mars"
        df.to_parquet(path)
    _clean(churn_spec, splits, tmp_path / "b")
    a = (tmp_path / "a" / "params.json").read_text()
    assert a == (tmp_path / "b" / "params.json").read_text()


def test_apply_one_row_and_missing_columns(churn_spec: Spec, splits: list[str]) -> None:
    train = pd.read_parquet(splits[0])
    params = fit(train, churn_spec)
    row = train.iloc[[0]].copy()
    row["tenure_months"], row["region"], row["monthly_charges"] = -5.0, None, 5e6
    start = time.perf_counter()
    out, counts = apply(row, params)
    assert time.perf_counter() - start < 0.5
    assert out["tenure_months"].iloc[0] == params.numeric_impute["tenure_months"]
    assert out["region"].iloc[0] == MISSING_TOKEN
    assert counts["impossible_values"] == 2 and counts["imputed_categorical"] == 1
    with pytest.raises(DataError, match=r"\['region'\]"):
        apply(row.drop(columns=["region"]), params)


def test_caps_and_mode(churn_spec: Spec) -> None:
    clean = churn_spec.data.clean.model_copy(
        update={"impute_categorical": "mode", "cap_quantiles": (0.1, 0.9), "valid_ranges": {}}
    )
    spec = churn_spec.model_copy(
        update={"data": churn_spec.data.model_copy(update={"clean": clean})}
    )
    df = pd.DataFrame(
        {
            "customer_id": range(11),
            "event_timestamp": pd.Timestamp("2025-01-01", tz="UTC"),
            "churned": [0, 1] * 5 + [0],
            "tenure_months": [float(v) for v in range(10)] + [1000.0],
            "plan": ["a", "a", "b", None, "a", "a", "b", "b", "a", "a", "c"],
        }
    )
    params = fit(df, spec)
    assert params.categorical_impute["plan"] == "a"
    lo, hi = params.caps["tenure_months"]
    assert 0 < lo < 2 and 8 < hi < 1000
    out, counts = apply(df, params)
    assert out["tenure_months"].max() == hi and counts["capped"] == 2


def _write_splits(df: pd.DataFrame, tmp_path: Path) -> list[str]:
    paths = [str(tmp_path / f"in_{s}.parquet") for s in ("train", "val", "test")]
    for p in paths:
        df.to_parquet(p)
    return paths


def _repeated_rows(entity: str) -> pd.DataFrame:
    """60 rows, one per entity, only 4 distinct feature vectors (low-cardinality features)."""
    n = 60
    return pd.DataFrame(
        {
            entity: [f"e{i}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2025-01-01", tz="UTC"),
            "plan": ["a", "b"] * (n // 2),
            "seats": [1.0, 1.0, 2.0, 2.0] * (n // 4),
            "y": [0, 1, 1] * (n // 3),
        }
    )


def test_no_bot_rule_with_derived_row_ids(tmp_path: Path) -> None:
    # No data.entity: the entity column is the derived row_id, unique per row, so repeated
    # feature vectors are ordinary rows, not bots.
    spec = parse_spec({"name": "t", "data": {"source": "x.csv", "label": "y"}})
    df = _repeated_rows("row_id").rename(columns={"event_timestamp": "ingested_at"})
    result, frames = _clean(spec, _write_splits(df, tmp_path), tmp_path)
    assert result.counts["train"]["bot_rows"] == 0 and len(frames[0]) == len(df)


def test_bot_rule_with_entity_and_its_setting(tmp_path: Path) -> None:
    # 40 customers with their own feature values + 10 customers sharing one vector (bots).
    df = pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(50)],
            "event_timestamp": pd.Timestamp("2025-01-01", tz="UTC"),
            "plan": ["a", "b"] * 20 + ["z"] * 10,
            "seats": [float(i) for i in range(40)] + [99.0] * 10,
            "y": [0, 1] * 25,
        }
    )
    splits = _write_splits(df, tmp_path)
    data: dict[str, object] = {
        "source": "x.csv",
        "label": "y",
        "entity": "customer",
        "timestamp": "event_timestamp",
    }
    expected = {None: 10, 10: 10, 11: 0, 0: 0}  # bot_min_entities -> rows dropped
    for setting, dropped in expected.items():
        if setting is not None:
            data["clean"] = {"bot_min_entities": setting}
        spec = parse_spec({"name": "t", "data": data})
        result, frames = _clean(spec, splits, tmp_path / str(setting))
        assert result.counts["train"]["bot_rows"] == dropped, setting
        assert len(frames[0]) == len(df) - dropped and len(frames[2]) == len(df)
        assert (frames[0]["seats"] == 99.0).any() == (dropped == 0)


def test_category_text_does_not_depend_on_the_batch() -> None:
    # A categorical float column with integral and non-integral values: 3.0 must become the
    # same text in a training batch as in a one-row serving request, and as in the encoder.
    from kubeloop.components.train.encoder import Encoder

    spec = parse_spec(
        {"name": "t", "data": {"source": "x.csv", "label": "y", "categorical": ["size"]}}
    )
    df = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d"],
            "ingested_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "size": [3.0, 3.5, np.nan, 3.0],
            "y": [0, 1, 0, 1],
        }
    )
    params = fit(df, spec)
    batch, _ = apply(df, params)
    one, _ = apply(df.iloc[[0]], params)
    assert batch["size"].tolist()[:2] == ["3", "3.5"] and one["size"].iloc[0] == "3"
    encoder = Encoder.fit(batch, spec)
    assert encoder.vocab["size"] == sorted({"3", "3.5", MISSING_TOKEN})
    assert encoder.transform(one)[1][0, 0] == encoder.transform(batch)[1][0, 0] > 0
