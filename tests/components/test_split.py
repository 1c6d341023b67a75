from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import DataError, LeakageError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.split.task import check_leakage, run


def _with_strategy(spec: Spec, strategy: str) -> Spec:
    split = spec.data.split.model_copy(update={"strategy": strategy})
    return spec.model_copy(update={"data": spec.data.model_copy(update={"split": split})})


def _run(spec: Spec, data: Path, tmp_path: Path):
    outs = [str(tmp_path / f"{s}.parquet") for s in ("train", "val", "test")]
    result = run(spec, str(data), *outs)
    return result, [pd.read_parquet(p) for p in outs]


def test_auto_is_time_split(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    result, (train, val, test) = _run(churn_spec, churn_ingested, tmp_path)
    assert result.strategy == "time"
    assert "no_time_overlap" in result.checks and "no_target_leakage" in result.checks
    ts = "event_timestamp"
    assert train[ts].max() <= val[ts].min() and val[ts].max() <= test[ts].min()
    n = len(pd.read_parquet(churn_ingested))
    assert sum(result.counts.values()) == n and abs(result.counts["train"] - 0.8 * n) <= 1


@pytest.mark.parametrize("strategy", ["entity", "stratified", "random"])
def test_strategies_are_deterministic(
    churn_spec: Spec, churn_ingested: Path, tmp_path: Path, strategy: str
) -> None:
    spec = _with_strategy(churn_spec, strategy)
    r1, frames1 = _run(spec, churn_ingested, tmp_path / "a")
    r2, frames2 = _run(spec, churn_ingested, tmp_path / "b")
    assert r1 == r2 and r1.strategy == strategy
    for f1, f2 in zip(frames1, frames2, strict=True):
        pd.testing.assert_frame_equal(f1, f2)
    if strategy == "entity":
        ids = [set(f["customer_id"]) for f in frames1]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    if strategy == "stratified":
        rates = [f["churned"].mean() for f in frames1]
        assert max(rates) - min(rates) < 0.03


def test_auto_entity_then_stratified(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"id": rng.integers(0, 100, 600), "x": rng.normal(size=600), "y": rng.integers(0, 2, 600)}
    )
    df.to_parquet(tmp_path / "d.parquet")
    spec = parse_spec({"name": "t", "data": {"source": "x", "label": "y", "entity": "id"}})
    assert _run(spec, tmp_path / "d.parquet", tmp_path)[0].strategy == "entity"
    spec = parse_spec({"name": "t", "data": {"source": "x", "label": "y"}})
    assert _run(spec, tmp_path / "d.parquet", tmp_path)[0].strategy == "stratified"


def test_entity_overlap_raises(churn_spec: Spec, churn_ingested: Path) -> None:
    df = pd.read_parquet(churn_ingested)
    train, val, test = df.iloc[:1600], df.iloc[1600:1800], df.iloc[1800:]
    with pytest.raises(LeakageError, match=r"entity leakage: \d+ 'customer_id' value\(s\)"):
        check_leakage(train, val, test, churn_spec, "entity")


def test_time_overlap_raises(churn_spec: Spec, churn_ingested: Path) -> None:
    df = pd.read_parquet(churn_ingested).sample(frac=1.0, random_state=0)
    with pytest.raises(LeakageError, match="time leakage"):
        check_leakage(df.iloc[:1600], df.iloc[1600:1800], df.iloc[1800:], churn_spec, "time")


def test_feature_equal_to_label_raises(
    churn_spec: Spec, churn_ingested: Path, tmp_path: Path
) -> None:
    df = pd.read_parquet(churn_ingested)
    df["churn_flag"] = df["churned"]
    df.to_parquet(tmp_path / "leak.parquet")
    with pytest.raises(LeakageError, match="'churn_flag' equals the label"):
        _run(churn_spec, tmp_path / "leak.parquet", tmp_path)


def test_feature_determining_label_raises(churn_spec: Spec, churn_ingested: Path) -> None:
    df = pd.read_parquet(churn_ingested)
    df["status"] = np.where(df["churned"] == 1, "cancelled", "active")
    df["days_left"] = np.where(df["churned"] == 1, 5.0, 40.0) + df["tenure_months"].fillna(0) % 7
    for col, other in (("status", "days_left"), ("days_left", "status")):
        frame = df.drop(columns=[other])
        with pytest.raises(LeakageError, match=f"'{col}'"):
            check_leakage(
                frame.iloc[:1600], frame.iloc[1600:1800], frame.iloc[1800:], churn_spec, "random"
            )


def test_too_few_rows(churn_spec: Spec, churn_ingested: Path) -> None:
    df = pd.read_parquet(churn_ingested)
    with pytest.raises(DataError, match="too few rows"):
        check_leakage(df, df.iloc[:0], df, churn_spec, "random")
    only_zeros = df[df["churned"] == 0]
    with pytest.raises(DataError, match=r"too few rows.*class"):
        check_leakage(df, only_zeros, df, churn_spec, "random")
