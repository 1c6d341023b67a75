"""Which columns are features, which are categorical, and what the learning task is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import ResolvedTask, Spec

if TYPE_CHECKING:
    import pandas as pd

ColumnKind = Literal["numeric", "categorical"]
# Integer labels with at most this many distinct values are classes, not a quantity.
MAX_CLASSES = 50


def feature_columns(df: pd.DataFrame, spec: Spec) -> list[str]:
    d = spec.data
    reserved = {d.label, d.entity_column, d.timestamp_column, *d.drop}
    if d.features is not None:
        missing = [c for c in d.features if c not in df.columns]
        if missing:
            raise DataError(f"data.features: column(s) {missing} not in the data")
        return list(d.features)
    return [c for c in df.columns if c not in reserved]


def feature_kinds(df: pd.DataFrame, spec: Spec) -> dict[str, ColumnKind]:
    """Numeric vs categorical per feature: the spec's list wins, else the dtype decides."""
    import pandas as pd

    declared = set(spec.data.categorical or [])
    kinds: dict[str, ColumnKind] = {}
    for c in feature_columns(df, spec):
        if c in declared or not (
            pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        ):
            kinds[c] = "categorical"
        else:
            kinds[c] = "numeric"
    return kinds


def category_text(v: Any) -> str | None:
    """One categorical value as text; None when missing; integral floats print as ints
    (3.0 -> "3": a column turns float when it has nulls, and 3 and 3.0 are one category).

    The single definition used by clean (fit and apply) and the train encoder (vocabulary
    and serving lookups): they must agree value by value or serving codes go wrong."""
    if type(v) is str:  # the common case (clean's output), without the imports below
        return v
    import numpy as np
    import pandas as pd

    if isinstance(v, float | np.floating):
        if v != v:  # NaN
            return None
        return str(int(v)) if float(v).is_integer() else str(v)
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    return str(v)


def as_category_text(s: pd.Series) -> pd.Series:
    """:func:`category_text` for a column (object dtype); missing values stay missing."""
    return s.map(category_text, na_action="ignore").astype(object)


def resolve_task(df: pd.DataFrame, spec: Spec) -> ResolvedTask:
    """The task from the spec, or inferred from the label; rejects unusable labels."""
    import pandas as pd

    label = spec.data.label
    if label not in df.columns:
        raise DataError(
            f"data.label: column {label!r} not in the data "
            f"(columns: {sorted(map(str, df.columns))})"
        )
    y = df[label].dropna()
    if y.empty:
        raise DataError(f"data.label: column {label!r} has no values")
    n = y.nunique()
    task = spec.data.task
    if task == "auto":
        if (pd.api.types.is_float_dtype(y) and not (y == y.round()).all()) or (
            pd.api.types.is_numeric_dtype(y) and n > MAX_CLASSES
        ):
            task = "regression"
        else:
            task = "binary" if n <= 2 else "multiclass"
    if task != "regression" and n < 2:
        raise DataError(
            f"data.label: column {label!r} has a single class ({y.iloc[0]!r}); "
            "classification needs at least two"
        )
    if task == "binary" and n > 2:
        raise DataError(f"data.label: task is binary but {label!r} has {n} classes")
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"data.label: task is regression but {label!r} is not numeric")
    return task
