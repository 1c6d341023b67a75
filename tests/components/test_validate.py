from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kubeloop.components.core.errors import ValidationBlocked
from kubeloop.components.core.spec import Expectation, Spec
from kubeloop.components.validate.task import default_reference, run


def _run(spec: Spec, data: Path, tmp_path: Path, name: str = "r"):
    return run(spec, str(data), str(tmp_path / f"{name}.html"), str(tmp_path / f"{name}.md"))


def _blocked(spec: Spec, df: pd.DataFrame, tmp_path: Path) -> ValidationBlocked:
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad)
    with pytest.raises(ValidationBlocked) as info:
        _run(spec, bad, tmp_path, "bad")
    err = info.value
    assert err.report_path == str(tmp_path / "bad.html")
    assert (tmp_path / "bad.html").is_file() and (tmp_path / "bad.md").is_file()
    assert "FAIL" in (tmp_path / "bad.md").read_text()
    assert str(tmp_path / "bad.html") in str(err)
    return err


def test_first_run_passes_and_writes_reference(
    churn_spec: Spec, churn_ingested: Path, tmp_path: Path
) -> None:
    ref = default_reference(churn_spec)
    assert not ref.exists()
    result = _run(churn_spec, churn_ingested, tmp_path)
    assert result.success and result.blocking == [] and result.evaluated > 20
    assert result.reference is None and ref.is_file()
    html = (tmp_path / "r.html").read_text()
    assert "<table>" in html and "monthly_charges" in html
    assert (
        "| expectation | column | severity | result | observed |" in (tmp_path / "r.md").read_text()
    )
    # Second run: checked against the stored reference.
    assert _run(churn_spec, churn_ingested, tmp_path).reference == str(ref)


def test_schema_change_blocks(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    _run(churn_spec, churn_ingested, tmp_path)  # accept a reference
    df = pd.read_parquet(churn_ingested).drop(columns=["region"]).assign(new_col=1)
    err = _blocked(churn_spec, df, tmp_path)
    assert "missing ['region']" in str(err) and "new_col" in str(err)


def test_all_null_column_blocks(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    # First run, no reference yet: the data itself must not have an all-null column.
    df = pd.read_parquet(churn_ingested).assign(data_usage_gb=float("nan"))
    err = _blocked(churn_spec, df, tmp_path)
    assert "data_usage_gb: null_fraction" in str(err)
    assert not default_reference(churn_spec).exists()  # blocked data is not a reference


def test_type_change_blocks(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    _run(churn_spec, churn_ingested, tmp_path)
    df = pd.read_parquet(churn_ingested)
    df["tenure_months"] = df["tenure_months"].map(lambda v: f"{v} months")
    err = _blocked(churn_spec, df, tmp_path)
    assert "tenure_months: type failed, expected type numeric" in str(err)


def test_new_category_only_warns(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    _run(churn_spec, churn_ingested, tmp_path)
    df = pd.read_parquet(churn_ingested).assign(plan="gold")
    df.to_parquet(tmp_path / "new.parquet")
    result = _run(churn_spec, tmp_path / "new.parquet", tmp_path)
    assert result.success and any(w.startswith("plan: in_set") for w in result.warnings)


def test_spec_expectations(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    validation = churn_spec.validation.model_copy(
        update={
            "expectations": [
                Expectation(kind="between", column="tenure_months", min=0, max=600),
                Expectation(kind="in_set", column="region", values=["north"], severity="warn"),
                Expectation(kind="row_count", min=1),
            ]
        }
    )
    spec = churn_spec.model_copy(update={"validation": validation})
    # The demo data has negative tenures: the blocking range check fails.
    err = _blocked(spec, pd.read_parquet(churn_ingested), tmp_path)
    assert "tenure_months: between failed, expected values in [0.0, 600.0]" in str(err)
    assert "region" not in str(err)  # a warning, not blocking


def test_explicit_reference(churn_spec: Spec, churn_ingested: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.parquet"
    pd.read_parquet(churn_ingested).assign(extra="x").to_parquet(ref)
    validation = churn_spec.validation.model_copy(update={"reference": str(ref)})
    spec = churn_spec.model_copy(update={"validation": validation})
    err = _blocked(spec, pd.read_parquet(churn_ingested), tmp_path)
    assert "missing ['extra']" in str(err) and str(ref) in (tmp_path / "bad.md").read_text()
