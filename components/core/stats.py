"""Reference statistics of the training data, stored with each model for drift checks.

Shape of :func:`reference_stats` (plain JSON types only)::

    {"n_rows": 1000,
     "features": {
        "<numeric col>": {"kind": "numeric", "count", "null_fraction", "mean", "std", "min",
                          "max", "quantiles": {"0.5": ...},
                          "histogram": {"edges": [...], "counts": [...]}},
        "<categorical col>": {"kind": "categorical", "count", "null_fraction", "n_unique",
                              "frequencies": {"<value>": share, ..., "__other__": share}}}}

Histogram edges are the train deciles (so each bin holds ~10% of train rows); a drift check
must bin new data with :func:`histogram_counts`, which puts values below the first / above
the last edge into the outer bins, so counts stay comparable with the reference.
Statistics are over non-null values; ``null_fraction`` covers the rest.

Live drift checks also need the rows themselves (a two-sample test on 10 decile counts loses
most of its power): :func:`reference_sample` draws a seeded sample of at most
:data:`REFERENCE_SAMPLE_ROWS` training rows; the register stage adds the model's predictions
on them (:data:`PREDICTION_COLUMN`, and :data:`SCORE_COLUMN` for binary models) and stores it
as ``reference_sample.parquet`` beside ``reference_stats.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DECILES = tuple(i / 10 for i in range(11))
TOP_CATEGORIES = 100
OTHER = "__other__"
REFERENCE_SAMPLE_ROWS = 5000
# Columns of the reference sample holding the model's own output on those rows: the class
# label as text (classification) or the value (regression), and P(positive class) (binary).
PREDICTION_COLUMN = "__prediction__"
SCORE_COLUMN = "__score__"


def _f(v: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    v = float(v)
    return v if np.isfinite(v) else None


def histogram_edges(values: pd.Series) -> list[float]:
    """Fixed bin edges: the distinct deciles of `values` (non-null)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return []
    return sorted({float(q) for q in v.quantile(list(DECILES))})


def histogram_counts(values: Any, edges: list[float]) -> list[int]:
    """Counts of `values` on `edges`, out-of-range values clipped into the outer bins."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if len(edges) < 2:
        return [len(v)] if edges else []
    counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
    return [int(c) for c in counts]


def numeric_stats(values: pd.Series) -> dict[str, Any]:
    n = len(values)
    v = pd.to_numeric(values, errors="coerce").dropna()
    out: dict[str, Any] = {
        "kind": "numeric",
        "count": len(v),
        "null_fraction": float(1 - len(v) / n) if n else 0.0,
    }
    if v.empty:
        return {
            **out,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": {},
            "histogram": {"edges": [], "counts": []},
        }
    edges = histogram_edges(v)
    qs = v.quantile(list(QUANTILES))
    return {
        **out,
        "mean": _f(v.mean()),
        "std": _f(v.std(ddof=0)),
        "min": _f(v.min()),
        "max": _f(v.max()),
        "quantiles": {str(q): _f(x) for q, x in zip(QUANTILES, qs, strict=True)},
        "histogram": {"edges": edges, "counts": histogram_counts(v, edges)},
    }


def categorical_stats(values: pd.Series, top: int = TOP_CATEGORIES) -> dict[str, Any]:
    n = len(values)
    v = values.dropna().astype(str)
    shares = v.value_counts(normalize=True, sort=True)
    freqs = {str(k): float(s) for k, s in shares.iloc[:top].items()}
    if len(shares) > top:
        freqs[OTHER] = float(shares.iloc[top:].sum())
    return {
        "kind": "categorical",
        "count": len(v),
        "null_fraction": float(1 - len(v) / n) if n else 0.0,
        "n_unique": len(shares),
        "frequencies": freqs,
    }


def reference_stats(df: pd.DataFrame, kinds: Mapping[str, str]) -> dict[str, Any]:
    """Statistics per feature in `kinds` ({column: "numeric"|"categorical"})."""
    features = {
        col: numeric_stats(df[col]) if kind == "numeric" else categorical_stats(df[col])
        for col, kind in kinds.items()
    }
    return {"n_rows": len(df), "features": features}


def label_stats(y: pd.Series, task: str) -> dict[str, Any]:
    """Label (or prediction) distribution: class rates, or value quantiles + histogram."""
    if task == "regression":
        return {"task": task, **numeric_stats(y)}
    rates = y.dropna().astype(str).value_counts(normalize=True)
    return {
        "task": task,
        "count": int(y.notna().sum()),
        "class_rates": {str(k): float(s) for k, s in rates.sort_index().items()},
    }


def reference_sample(
    df: pd.DataFrame, columns: list[str], *, max_rows: int = REFERENCE_SAMPLE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """A seeded uniform sample (without replacement) of at most `max_rows` rows of `columns`,
    in the frame's row order, with a fresh 0..n-1 index."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"reference sample: column(s) {missing} not in the frame")
    if max_rows < 1:
        raise ValueError(f"reference sample: max_rows must be >= 1, got {max_rows}")
    n = min(len(df), max_rows)
    rows = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[rows][columns].reset_index(drop=True)
