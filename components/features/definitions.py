"""Feast objects for one project, built from the spec and the data's column types.

Names are the contract with the rest of the loop: the entity is named after the entity
column, the view is `{spec.name}_features`, the service is `spec.feature_service` (versioned,
e.g. `churn_v1`), and every feature keeps its source column name. `feature_repo/` declares
the same objects for the churn demo by hand; a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, FeastType, Float64, Int64, String, UnixTimestamp

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import Spec


@dataclass(frozen=True)
class FeastDefinitions:
    entity: Entity
    source: FileSource
    view: FeatureView
    service: FeatureService

    @property
    def objects(self) -> list[Any]:
        """What `FeatureStore.apply` takes, in dependency order."""
        return [self.entity, self.source, self.view, self.service]


def view_name(spec: Spec) -> str:
    return f"{spec.name}_features"


def source_name(spec: Spec) -> str:
    return f"{spec.name}_source"


def feast_type(dtype: Any, kind: str) -> FeastType:
    """Feast type of a feature column. The physical dtype wins: the online store converts
    values by the declared type, so an int column declared Float64 (or vice versa) breaks
    materialization. Without a dtype, the kind decides (numeric → Float64)."""
    if dtype is None:
        return Float64 if kind == "numeric" else String
    if pd.api.types.is_bool_dtype(dtype):
        return Bool
    if pd.api.types.is_integer_dtype(dtype):
        return Int64
    if pd.api.types.is_float_dtype(dtype):
        return Float64
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return UnixTimestamp
    return String


def entity_value_type(dtype: Any, column: str) -> ValueType:
    if dtype is None or pd.api.types.is_string_dtype(dtype):
        return ValueType.STRING
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return ValueType.INT64
    raise DataError(
        f"data.entity: column {column!r} has dtype {dtype}; a Feast entity key must be "
        "an integer or a string"
    )


def build(
    spec: Spec,
    source_path: str,
    kinds: Mapping[str, str],
    *,
    dtypes: Mapping[str, Any] | None = None,
) -> FeastDefinitions:
    """Entity, file source, feature view and versioned feature service for `spec`.

    `kinds` is `feature_kinds(df, spec)` (its keys are the features, in order); `dtypes`
    (e.g. `df.dtypes.to_dict()`) makes the Feast types follow the data exactly.
    """
    dtypes = dtypes or {}
    entity_col = spec.data.entity_column
    entity = Entity(
        name=entity_col,
        join_keys=[entity_col],
        value_type=entity_value_type(dtypes.get(entity_col), entity_col),
        description=f"{spec.name}: one row of features per {entity_col} and timestamp",
    )
    source = FileSource(
        name=source_name(spec),
        path=source_path,
        timestamp_field=spec.data.timestamp_column,
    )
    view = FeatureView(
        name=view_name(spec),
        entities=[entity],
        ttl=timedelta(days=spec.features.ttl_days),
        schema=[Field(name=c, dtype=feast_type(dtypes.get(c), k)) for c, k in kinds.items()],
        online=True,
        source=source,
        tags={"managed_by": "kubeloop"},
    )
    service = FeatureService(
        name=spec.feature_service,
        features=[view],
        description=f"Features of {spec.name}; the version in the name is the model contract",
    )
    return FeastDefinitions(entity=entity, source=source, view=view, service=service)
