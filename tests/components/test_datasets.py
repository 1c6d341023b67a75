from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import load_spec
from kubeloop.components.datasets import churn, public


def test_generate_is_seeded() -> None:
    a = churn.generate(500, seed=3)
    pd.testing.assert_frame_equal(a, churn.generate(500, seed=3))
    assert not a.equals(churn.generate(500, seed=4))


def test_generate_has_the_documented_dirt() -> None:
    df = churn.generate(4000, seed=0)
    assert set(df.columns) == {
        "customer_id",
        "event_timestamp",
        "tenure_months",
        "plan",
        "contract",
        "monthly_charges",
        "total_charges",
        "data_usage_gb",
        "support_tickets",
        "region",
        "payment_method",
        "churned",
    }
    assert df.duplicated().sum() > 0
    assert df["customer_id"].duplicated().any()  # monthly snapshots of the same customer
    assert df["tenure_months"].isna().any() and df["churned"].isna().any()
    assert (df["tenure_months"] < 0).any()
    charges = df["monthly_charges"]
    assert charges.map(lambda v: isinstance(v, str) and v.startswith("$")).any()
    ts = df["event_timestamp"].dropna()
    assert ts.str.contains("/").any() and ts.str.contains(r"\+00:00").any()
    assert df["contract"].nunique() > 3  # case/space/hyphen variants
    features = [c for c in df.columns if c not in ("customer_id", "event_timestamp", "churned")]
    bots = df.groupby(df[features].astype(str).agg("|".join, axis=1))["customer_id"].nunique()
    assert bots.max() >= 5
    rate = df["churned"].mean()
    assert 0.15 < rate < 0.35


def test_drift_shifts_covariates_and_churn() -> None:
    now, later = churn.generate(4000, seed=0), churn.generate(4000, seed=0, drift=True)
    mtm = lambda d: d["contract"].str.lower().str.contains("month").mean()  # noqa: E731
    assert mtm(later) > mtm(now) + 0.05
    assert later["support_tickets"].mean() > now["support_tickets"].mean() * 1.3
    assert pd.to_datetime(later["event_timestamp"].dropna(), format="mixed", utc=True).min() > (
        pd.to_datetime(now["event_timestamp"].dropna(), format="mixed", utc=True).max()
    )


def test_write_demo_keeps_an_existing_spec(tmp_path: Path) -> None:
    paths = churn.write_demo(tmp_path, rows=300, drift=True)
    assert paths["data"].is_file() and paths["drift"].is_file()
    spec = load_spec(paths["spec"])
    assert spec.data.entity == "customer_id" and spec.evaluate.slice_by == ["region"]
    assert spec.data.clean.valid_ranges["tenure_months"] == (0, 600)
    assert spec.evaluate.minimums == {"roc_auc": 0.6}
    assert "#" in paths["spec"].read_text()
    paths["spec"].write_text("name: mine\ndata: {source: x.csv, label: y}\n")
    churn.write_demo(tmp_path, rows=300)
    assert yaml.safe_load(paths["spec"].read_text())["name"] == "mine"


@pytest.mark.parametrize(
    ("name", "n_classes"), [("breast_cancer", 2), ("wine", 3), ("diabetes", None)]
)
def test_public_export(tmp_path: Path, name: str, n_classes: int | None) -> None:
    path, label = public.export(name, tmp_path)
    df = pd.read_csv(path)
    assert label in df.columns and len(df) > 100
    if n_classes is not None:
        assert df[label].nunique() == n_classes
    spec = load_spec(tmp_path / "kubeloop.yaml")
    assert spec.name == name and spec.data.label == label and spec.data.entity is None


def test_public_export_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="breast_cancer"):
        public.export("titanic", tmp_path)
