"""Features stage: register the cleaned rows in Feast, rebuild each split from it with a
point-in-time join, and fill the online store for serving.

The offline source is every cleaned row (train+val+test; entity, timestamp and features,
never the label). Each split's entity frame (entity, timestamp, label) is then joined
point-in-time through the versioned feature service, so training reads exactly what the
feature store would have served at each row's timestamp. Feast is imported inside the
functions: importing this module stays cheap for the KFP component.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from kubeloop.components.core.errors import DataError, KubeloopError
from kubeloop.components.core.io import atomic_path
from kubeloop.components.core.spec import Spec

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

SPLITS = ("train", "val", "test")
# Feast's name for the entity-frame timestamp; using it spares Feast guessing (and printing).
_FEAST_TS = "event_timestamp"
# Tags each distinct (entity, timestamp) request sent to Feast, to match answers back.
_ROW = "__kubeloop_row"


class FeaturesResult(BaseModel):
    enabled: bool
    feature_service: str
    feature_view: str
    features: list[str]
    train_rows: int
    val_rows: int
    test_rows: int
    source_path: str | None = None  # the offline source parquet
    online_rows: int = 0  # entities materialized to the online store
    materialized_until: str | None = None  # ISO-8601 UTC; None: nothing materialized
    seconds_historical: float = 0.0  # the three point-in-time joins together
    seconds_materialize: float = 0.0
    note: str = ""


def run(
    spec: Spec,
    train_path: str,
    val_path: str,
    test_path: str,
    train_out: str,
    val_out: str,
    test_out: str,
) -> FeaturesResult:
    """Point-in-time training frames from Feast for the three cleaned splits.

    Outputs have the input's columns (same order, dtypes where Feast keeps them; timestamps
    become tz-aware UTC) and rows (same order; a lost or duplicated row is an error).
    """
    import pandas as pd

    from kubeloop.components.core.io import read_table, write_table
    from kubeloop.components.core.schema import feature_columns, feature_kinds

    ins = dict(zip(SPLITS, (train_path, val_path, test_path), strict=True))
    outs = dict(zip(SPLITS, (train_out, val_out, test_out), strict=True))
    frames = {s: read_table(p, what=f"features: {s} split") for s, p in ins.items()}
    features = feature_columns(frames["train"], spec)
    n = {s: len(df) for s, df in frames.items()}

    if not spec.features.enabled:
        for s in SPLITS:
            Path(outs[s]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ins[s], outs[s])
        return FeaturesResult(
            enabled=False,
            feature_service=spec.feature_service,
            feature_view="",
            features=features,
            train_rows=n["train"],
            val_rows=n["val"],
            test_rows=n["test"],
            note="features.enabled is false: splits copied through unchanged",
        )

    from kubeloop.components.features.definitions import build
    from kubeloop.components.features.store import open_store, source_path

    d = spec.data
    key_cols = [d.entity_column, d.timestamp_column]
    for s, df in frames.items():
        _check_columns(df, s, [*key_cols, d.label, *features], list(frames["train"].columns))
        df[d.timestamp_column] = _utc(df[d.timestamp_column], d.timestamp_column)

    source = pd.concat([df[[*key_cols, *features]] for df in frames.values()], ignore_index=True)
    _check_keys(source, d.entity_column, d.timestamp_column)
    src_path = source_path(spec)
    # Replaced in one step: Feast (or a server) reading it never sees half a file.
    with atomic_path(src_path) as tmp:
        source.to_parquet(tmp, index=False)

    defs = build(
        spec,
        str(src_path.resolve()),
        feature_kinds(frames["train"], spec),
        dtypes=source.dtypes.to_dict(),
    )
    store = open_store(spec)
    store.apply(defs.objects)

    t0 = time.perf_counter()
    joined = {s: _join(store, df, spec, features) for s, df in frames.items()}
    seconds_historical = time.perf_counter() - t0
    for s in SPLITS:
        write_table(joined[s], outs[s])

    result = FeaturesResult(
        enabled=True,
        feature_service=defs.service.name,
        feature_view=defs.view.name,
        features=features,
        source_path=str(src_path),
        train_rows=n["train"],
        val_rows=n["val"],
        test_rows=n["test"],
        seconds_historical=round(seconds_historical, 3),
    )
    if not spec.features.online:
        result.note = "features.online is false: online store not materialized"
    elif d.entity is None:
        # Derived row ids exist only in this pipeline run: no request can look them up,
        # and materializing one online row per training row is slow (~20 s per 100k).
        result.note = "no data.entity (derived row_id): online store not materialized"
    else:
        ts = source[d.timestamp_column]
        end = ts.max().to_pydatetime() + timedelta(seconds=1)
        t0 = time.perf_counter()
        store.materialize(ts.min().to_pydatetime() - timedelta(seconds=1), end)
        result.seconds_materialize = round(time.perf_counter() - t0, 3)
        result.online_rows = int(source[d.entity_column].nunique())
        result.materialized_until = end.isoformat()
    return result


def online_features(
    spec: Spec, entity_ids: list[Any], *, store: FeatureStore | None = None
) -> pd.DataFrame:
    """Latest feature values per entity id from the online store, via the feature service.

    One row per id, in order: the entity column then the features. Ids the store does not
    know come back with every feature null (so integer features read as float there).
    Pass `store` (from `open_store(spec)`) to reuse one store across calls when serving.
    """
    store = store or _open_registered(spec)
    service = store.get_feature_service(spec.feature_service)
    key = spec.data.entity_column
    # numpy scalars → Python values: Feast converts entity keys by their Python type.
    rows = [{key: v.item() if hasattr(v, "item") else v} for v in entity_ids]
    return store.get_online_features(features=service, entity_rows=rows).to_df()


def historical_features(
    spec: Spec,
    entity_df: pd.DataFrame,
    *,
    store: FeatureStore | None = None,
    missing: Literal["null", "error"] = "null",
) -> pd.DataFrame:
    """Point-in-time join: for each row of `entity_df` (entity and timestamp columns of the
    spec, any other columns pass through untouched), the latest feature values at or before
    its timestamp (within the view's ttl), through the registered feature service.

    Same rows in the same order, then the features; the timestamp column comes back as
    tz-aware UTC. A row with no feature row at or before its timestamp gets nulls
    (`missing="null"`) or raises DataError (`missing="error"`).
    """
    import numpy as np
    import pandas as pd

    d = spec.data
    ent, ts = d.entity_column, d.timestamp_column
    store = store or _open_registered(spec)
    service = store.get_feature_service(spec.feature_service)
    cols = list(entity_df.columns)
    for c in (ent, ts):
        if c not in cols:
            raise DataError(f"features: entity frame lacks column {c!r} (has {cols})")
    base = entity_df.reset_index(drop=True)
    base[ts] = _utc(base[ts], ts)

    # Feast gets each distinct (entity, timestamp) once, tagged with an id: its file store
    # collapses repeated pairs and drops a known entity whose feature rows are all later
    # than the request, so rows are matched back by id rather than trusted to survive.
    keys = base[[ent, ts]].dropna().drop_duplicates(ignore_index=True)
    keys[_ROW] = np.arange(len(keys))
    got = store.get_historical_features(
        entity_df=keys.rename(columns={ts: _FEAST_TS}), features=service
    ).to_df()
    if got[_ROW].duplicated().any():
        raise DataError(
            f"features: the point-in-time join returned {int(got[_ROW].duplicated().sum())} "
            "duplicated entity rows"
        )
    features = [c for c in got.columns if c not in (ent, _FEAST_TS, ts, _ROW)]
    key_id = base[[ent, ts]].merge(keys, how="left", on=[ent, ts])[_ROW]
    feats = got.set_index(_ROW)[features].reindex(key_id.to_numpy()).reset_index(drop=True)
    # Unknown entities come back from Feast as all-null rows, dropped ones not at all.
    unmatched = feats.isna().all(axis=1)
    if missing == "error" and features and unmatched.any():
        raise DataError(
            f"features: the point-in-time join found no features for {int(unmatched.sum())} "
            f"of {len(base)} rows (no feature row for their entity at or before their "
            f"timestamp within features.ttl_days={spec.features.ttl_days})"
        )
    return pd.concat([base, feats], axis=1)


def _open_registered(spec: Spec) -> FeatureStore:
    from feast.errors import FeatureServiceNotFoundException

    from kubeloop.components.features.store import open_store

    store = open_store(spec)
    try:
        store.get_feature_service(spec.feature_service)
    except FeatureServiceNotFoundException:
        raise KubeloopError(
            f"features: feature service {spec.feature_service!r} is not registered in the "
            "feature store (run the training pipeline first)"
        ) from None
    return store


def _join(store: FeatureStore, df: pd.DataFrame, spec: Spec, features: list[str]) -> pd.DataFrame:
    """One split rebuilt from Feast: its entity, timestamp and label (and any column that is
    not a feature) pass through; the features come from the point-in-time join."""
    passthrough = [c for c in df.columns if c not in features]
    out = historical_features(spec, df[passthrough], store=store, missing="error")
    out = out[list(df.columns)]
    for c in features:
        if out[c].dtype != df[c].dtype:
            # e.g. Feast's float for an int column with nulls: keep Feast's then.
            with contextlib.suppress(TypeError, ValueError):
                out[c] = out[c].astype(df[c].dtype)
    return out


def _utc(ts: pd.Series, column: str) -> pd.Series:
    """Tz-aware UTC timestamps; naive ones are taken to be UTC already."""
    import pandas as pd

    if not pd.api.types.is_datetime64_any_dtype(ts):
        try:
            ts = pd.to_datetime(ts, utc=True)
        except (TypeError, ValueError) as err:
            raise DataError(
                f"data.timestamp: column {column!r} is not a timestamp: {err}"
            ) from None
    if ts.isna().any():
        raise DataError(f"data.timestamp: column {column!r} has {int(ts.isna().sum())} nulls")
    if getattr(ts.dt, "tz", None) is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def _check_columns(df: pd.DataFrame, split: str, needed: list[str], columns: list[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"features: {split} split lacks column(s) {missing}")
    if list(df.columns) != columns:
        raise DataError(
            f"features: {split} split has columns {list(df.columns)}, train has {columns}"
        )


def _check_keys(source: pd.DataFrame, entity: str, ts: str) -> None:
    """Feast keys feature rows by (entity, timestamp): nulls or repeats would be dropped or
    resolved arbitrarily by the join, silently pairing labels with other rows' features."""
    if source[entity].isna().any():
        raise DataError(
            f"data.entity: column {entity!r} has {int(source[entity].isna().sum())} nulls"
        )
    dup = source.duplicated([entity, ts], keep=False)
    if dup.any():
        example = source.loc[dup, [entity, ts]].iloc[0].tolist()
        raise DataError(
            f"data.entity/data.timestamp: {int(dup.sum())} rows share an ({entity}, {ts}) pair "
            f"with another row, e.g. {example}; Feast needs one feature row per entity and "
            "timestamp (make timestamps unique, or leave data.entity unset to use row ids)"
        )
