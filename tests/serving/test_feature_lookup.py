"""FeatureLookup against a real Feast store (SQLite online store, materialized)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec
from kubeloop.serving.feature_lookup import FeatureLookup, UnknownEntities
from tests.components.test_features import FEATURES, churn_frame, make_spec


def build_store(spec: Spec, df: pd.DataFrame) -> None:
    """Register the definitions over `df` and materialize it, as the features stage does."""
    from kubeloop.components.core.schema import feature_kinds
    from kubeloop.components.features.definitions import build
    from kubeloop.components.features.store import open_store, source_path

    src = source_path(spec)
    src.parent.mkdir(parents=True, exist_ok=True)
    source = df[["customer_id", "event_timestamp", *FEATURES]]
    source.to_parquet(src, index=False)
    kinds = feature_kinds(df.drop(columns=["customer_id", "event_timestamp"]), spec)
    defs = build(spec, str(src.resolve()), kinds, dtypes=source.dtypes.to_dict())
    store = open_store(spec)
    store.apply(defs.objects)
    ts = df["event_timestamp"]
    start = ts.min().to_pydatetime() - timedelta(seconds=1)
    store.materialize(start, ts.max().to_pydatetime() + timedelta(seconds=1))


@pytest.fixture(scope="module")
def churn_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lookup")
    spec = make_spec(root / "work")
    df = churn_frame(customers=20, snapshots=3)
    build_store(spec, df)
    latest = df.sort_values("event_timestamp").groupby("customer_id").tail(1)
    return {"spec": spec, "latest": latest.set_index("customer_id")}


@pytest.fixture(scope="module")
def lookup(churn_store: dict[str, Any]) -> FeatureLookup:
    return FeatureLookup(churn_store["spec"], ["plan", "tenure_months", "support_tickets"])


def test_known_ids_get_their_latest_values_in_order(
    lookup: FeatureLookup, churn_store: dict[str, Any]
) -> None:
    latest = churn_store["latest"]
    ids = ["C0012", "C0003", "C0012", "C0019"]
    rows = lookup.rows(ids)
    assert len(rows) == len(ids)
    for cid, row in zip(ids, rows, strict=True):
        assert list(row) == ["plan", "tenure_months", "support_tickets"]  # model's order
        assert row == {
            "plan": latest.loc[cid, "plan"],
            "tenure_months": latest.loc[cid, "tenure_months"],
            "support_tickets": int(latest.loc[cid, "support_tickets"]),
        }, cid


def test_values_are_plain_json_ready_python(lookup: FeatureLookup) -> None:
    row = lookup.rows(["C0005"])[0]
    assert type(row["plan"]) is str
    assert type(row["tenure_months"]) is float
    assert type(row["support_tickets"]) is int  # Int64 in Feast: not numpy, not float
    assert json.loads(json.dumps(row)) == row


def test_unknown_ids_raise_naming_them(lookup: FeatureLookup) -> None:
    with pytest.raises(UnknownEntities) as err:
        lookup.rows(["nobody", "ghost"])
    assert err.value.ids == ["nobody", "ghost"]
    assert isinstance(err.value, KubeloopError)
    assert "'nobody'" in str(err.value) and "2 entity id(s)" in str(err.value)


def test_mixed_known_and_unknown_names_only_the_unknown(lookup: FeatureLookup) -> None:
    with pytest.raises(UnknownEntities) as err:
        lookup.rows(["C0001", "nobody", "C0002", 7, True])
    # 7 and True can never be string keys: unknown, not a crash inside Feast.
    assert err.value.ids == ["nobody", 7, True]


def test_empty_request_is_empty(lookup: FeatureLookup) -> None:
    assert lookup.rows([]) == []


def test_model_feature_service_is_used(churn_store: dict[str, Any]) -> None:
    spec = churn_store["spec"]
    with pytest.raises(KubeloopError, match="'churn_v2' is not registered"):
        FeatureLookup(spec, ["plan"], feature_service="churn_v2")
    ok = FeatureLookup(spec, ["plan"], feature_service="churn_v1")
    assert ok.feature_service == "churn_v1"
    assert ok.rows(["C0004"])[0]["plan"] == churn_store["latest"].loc["C0004", "plan"]


def test_model_feature_missing_from_service_is_named(churn_store: dict[str, Any]) -> None:
    with pytest.raises(KubeloopError, match=r"lacks the model's feature\(s\) \['age'\]"):
        FeatureLookup(churn_store["spec"], ["plan", "age"])


def test_store_without_service_says_what_to_do(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "empty")
    with pytest.raises(KubeloopError, match="run the training pipeline"):
        FeatureLookup(spec, ["plan"])


def test_integer_entity_keys(tmp_path: Path) -> None:
    """An Int64 entity key: ints and their decimal text both find the entity."""
    spec = make_spec(tmp_path / "work")
    df = churn_frame(customers=5, snapshots=2)
    df["customer_id"] = df["customer_id"].str[1:].astype("int64")
    build_store(spec, df)
    lookup = FeatureLookup(spec, ["monthly_charges"])
    latest = df.sort_values("event_timestamp").groupby("customer_id").tail(1)
    want = latest.set_index("customer_id").loc[3, "monthly_charges"]
    assert lookup.rows([3, "3"]) == [{"monthly_charges": want}] * 2
    with pytest.raises(UnknownEntities) as err:
        lookup.rows([3, "C3", 99, 2.5])
    assert err.value.ids == ["C3", 99, 2.5]
