from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.ingest.task import run


def _spec(source: Path, **data: object) -> Spec:
    return parse_spec({"name": "t", "data": {"source": str(source), "label": "y", **data}})


def test_ingest_churn_demo(churn_spec: Spec, tmp_path: Path) -> None:
    out, audit_path = tmp_path / "out.parquet", tmp_path / "audit.json"
    result = run(churn_spec, str(out), str(audit_path))
    df = pd.read_parquet(out)
    assert result.rows_out == len(df) < result.rows_in
    assert result.task == "binary"
    a = result.audit
    assert a["duplicate_rows"] > 0 and a["missing_label"] > 0 and a["missing_timestamp"] > 0
    assert a["duplicate_rows_kept"] == 0  # entity + timestamp: repeats are duplicates
    assert json.loads(audit_path.read_text()) == a
    assert str(df["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["monthly_charges"].dtype == "float64"  # "$1,234.50" parsed
    assert result.numeric_coerced == ["monthly_charges"]
    assert set(df["contract"].dropna()) == {"month_to_month", "one_year", "two_year"}
    assert df["churned"].dtype == "int64" and not df.duplicated().any()
    assert (df["tenure_months"] < 0).any()  # impossible values are left for validation/clean


def test_ingest_normalizes_small_table(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame(
        {
            "ts": ["2025-03-15", "03/16/2025", "2025-03-17 10:00:00+00:00", "not a date", None],
            "amount": ["$1,234.50", "12", " 7.5 ", "3", "4"],
            "plan": ["Month-to-Month", " month to month ", "MONTH_TO_MONTH", "a", "a"],
            "empty": [None] * 5,
            "y": ["Yes", "no", "yes ", "no", "yes"],
        }
    ).to_csv(src, index=False)
    result = run(_spec(src, timestamp="ts"), str(tmp_path / "o.parquet"), str(tmp_path / "a.json"))
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert result.audit["timestamp_unparseable"] == 1 and result.audit["missing_timestamp"] == 2
    assert list(df["ts"].dt.day) == [15, 16, 17]
    assert list(df["amount"]) == [1234.5, 12.0, 7.5]
    assert set(df["plan"]) == {"month_to_month"}
    assert set(df["y"]) == {"yes", "no"}
    assert "empty" in df.columns  # all-null: kept, validation blocks it
    assert "row_id" in df.columns  # no entity in the spec


def test_ingest_derives_row_id_and_ingested_at(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2, 3, 3, 3], "y": [0, 1, 0, 0, 0]}).to_csv(src, index=False)
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    r1 = run(_spec(src), str(tmp_path / "a.parquet"), str(tmp_path / "a.json"), now=now)
    # No entity/timestamp: identical rows are separate observations, kept and counted.
    assert r1.audit["duplicate_rows"] == 0 and r1.audit["duplicate_rows_kept"] == 2
    assert r1.rows_out == 5
    a = pd.read_parquet(tmp_path / "a.parquet")
    assert a["row_id"].is_unique  # Feast needs one row per (row_id, ingested_at)
    assert (a["ingested_at"] == pd.Timestamp(now)).all()
    # Stable ids: the same rows in another order get the same ids.
    pd.DataFrame({"x": [3, 2, 3, 1, 3], "y": [0, 1, 0, 0, 0]}).to_csv(src, index=False)
    run(_spec(src), str(tmp_path / "b.parquet"), str(tmp_path / "b.json"), now=now)
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert sorted(zip(a["x"], a["row_id"], strict=True)) == sorted(
        zip(b["x"], b["row_id"], strict=True)
    )
    assert (
        r1.fingerprint
        == run(
            _spec(src), str(tmp_path / "c.parquet"), str(tmp_path / "c.json"), now=now
        ).fingerprint
    )


@pytest.mark.parametrize("keys", [{"entity": "who"}, {"timestamp": "when"}])
def test_duplicates_dropped_with_entity_or_timestamp(tmp_path: Path, keys: dict[str, str]) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame(
        {
            "who": ["a", "b", "b", "c"],
            "when": ["2025-01-01", "2025-01-02", "2025-01-02", "2025-01-03"],
            "x": [1, 2, 2, 3],
            "y": [0, 1, 1, 0],
        }
    ).to_csv(src, index=False)
    result = run(_spec(src, **keys), str(tmp_path / "o.parquet"), str(tmp_path / "a.json"))
    # A repeated record of the same entity/event is one event sent twice.
    assert result.audit["duplicate_rows"] == 1 and result.audit["duplicate_rows_kept"] == 0
    assert result.rows_out == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        run(_spec(tmp_path / "nope.csv"), str(tmp_path / "o"), str(tmp_path / "a"))


def test_empty_file(tmp_path: Path) -> None:
    src = tmp_path / "e.csv"
    src.write_text("")
    with pytest.raises(DataError, match="empty"):
        run(_spec(src), str(tmp_path / "o"), str(tmp_path / "a"))
    src.write_text("x,y\n")
    with pytest.raises(DataError, match="no rows"):
        run(_spec(src), str(tmp_path / "o"), str(tmp_path / "a"))


def test_wrong_label_column(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2], "target": [0, 1]}).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"data.label: column 'y' not in the data"):
        run(_spec(src), str(tmp_path / "o"), str(tmp_path / "a"))


def test_single_class_label(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2, 3], "y": ["a", "A ", None]}).to_csv(src, index=False)
    with pytest.raises(DataError, match="single class"):
        run(_spec(src), str(tmp_path / "o"), str(tmp_path / "a"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("entity", "customer"), ("timestamp", "when"), ("features", ["x", "nope"])],
)
def test_spec_columns_must_exist(tmp_path: Path, field: str, value: object) -> None:
    src = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2], "y": [0, 1]}).to_csv(src, index=False)
    with pytest.raises(DataError, match=f"data.{field}"):
        run(_spec(src, **{field: value}), str(tmp_path / "o"), str(tmp_path / "a"))
