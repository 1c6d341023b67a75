"""Clean: impossible values -> missing, cap outliers, impute; parameters fitted on train only.

`apply` is also what serving calls on each request, so it is plain vectorized pandas with
no fitting and works on one-row frames.

Bot-like rows (the same feature values under >= `data.clean.bot_min_entities` (5)
distinct `data.entity` values: scripted sign-ups, test accounts) are dropped from TRAIN
only, and only when the spec names an entity (derived row ids identify rows, not who sent
them). They are not customers, so the model should not learn from them; but val/test
keep them, because production traffic will contain them too and evaluation must show how
the model handles what it will really be sent (and dropping rows there would use the
evaluation data to shape the pipeline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import Spec

if TYPE_CHECKING:
    import pandas as pd

MISSING_TOKEN = "__missing__"  # categorical impute value when impute_categorical="missing"
RULES = ("impossible_values", "capped", "imputed_numeric", "imputed_categorical")


class CleanParams(BaseModel):
    kinds: dict[str, Literal["numeric", "categorical"]]
    numeric_impute: dict[str, float]
    categorical_impute: dict[str, str]
    caps: dict[str, tuple[float, float]]
    valid_ranges: dict[str, tuple[float, float]]
    bot_min_entities: int = 5


class CleanResult(BaseModel):
    rows: dict[str, int]
    counts: dict[str, dict[str, int]]
    params_path: str


def _within_range(s: pd.Series, lo: float, hi: float) -> pd.Series:
    return s.where((s >= lo) & (s <= hi))


def fit(train_df: pd.DataFrame, spec: Spec) -> CleanParams:
    """Fit imputation values and caps on the training split (after impossible -> missing)."""
    import pandas as pd

    from kubeloop.components.core.schema import as_category_text, feature_kinds

    c = spec.data.clean
    kinds = feature_kinds(train_df, spec)
    unknown = [col for col in c.valid_ranges if col not in train_df.columns]
    if unknown:
        raise DataError(f"data.clean.valid_ranges: column(s) {unknown} not in the data")
    params = CleanParams(
        kinds=kinds,
        numeric_impute={},
        categorical_impute={},
        caps={},
        valid_ranges=dict(c.valid_ranges),
        bot_min_entities=c.bot_min_entities,
    )
    q_lo, q_hi = c.cap_quantiles
    for col, kind in kinds.items():
        if kind == "numeric":
            s = pd.to_numeric(train_df[col], errors="coerce").astype("float64")
            if col in c.valid_ranges:
                s = _within_range(s, *c.valid_ranges[col])
            s = s.dropna()
            if s.empty:  # validation blocks all-null columns; keep fit total anyway
                params.caps[col] = (float("-inf"), float("inf"))
                params.numeric_impute[col] = 0.0
                continue
            lo, hi = float(s.quantile(q_lo)), float(s.quantile(q_hi))
            params.caps[col] = (lo, hi)
            capped = s.clip(lo, hi)
            value = capped.median() if c.impute_numeric == "median" else capped.mean()
            params.numeric_impute[col] = float(value)
        else:
            s = as_category_text(train_df[col]).dropna()
            if c.impute_categorical == "mode" and not s.empty:
                params.categorical_impute[col] = str(s.mode().iloc[0])
            else:
                params.categorical_impute[col] = MISSING_TOKEN
    return params


def apply(df: pd.DataFrame, params: CleanParams) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean any frame with fitted params; other columns pass through unchanged."""
    import pandas as pd

    from kubeloop.components.core.schema import as_category_text

    missing = [c for c in params.kinds if c not in df.columns]
    if missing:
        raise DataError(f"clean: feature column(s) {missing} missing from the input")
    out = df.copy()
    counts = dict.fromkeys(RULES, 0)
    for col, kind in params.kinds.items():
        if kind == "numeric":
            s = pd.to_numeric(out[col], errors="coerce").astype("float64")
            if col in params.valid_ranges:
                ok = _within_range(s, *params.valid_ranges[col])
                counts["impossible_values"] += int((s.notna() & ok.isna()).sum())
                s = ok
            lo, hi = params.caps[col]
            counts["capped"] += int(((s < lo) | (s > hi)).sum())
            s = s.clip(lo, hi)
            counts["imputed_numeric"] += int(s.isna().sum())
            out[col] = s.fillna(params.numeric_impute[col])
        else:
            s = as_category_text(out[col])
            counts["imputed_categorical"] += int(s.isna().sum())
            out[col] = s.fillna(params.categorical_impute[col])
    return out, counts


def drop_bots(df: pd.DataFrame, spec: Spec, features: list[str], min_entities: int) -> pd.DataFrame:
    """Drop rows whose exact feature values occur under >= `min_entities` distinct entities.

    Only with a real `data.entity`: derived row ids are one per row and say nothing about
    who sent it, so repeated feature values there are ordinary (low-cardinality features),
    not bots. `min_entities` 0 disables the rule."""
    entity = spec.data.entity
    if not features or entity is None or min_entities <= 0 or entity not in df.columns:
        return df
    import pandas as pd

    # Row hash of the feature values (missing values hash alike, so they match too).
    key = pd.util.hash_pandas_object(df[features], index=False)
    n_entities = df[entity].groupby(key).transform("nunique")
    return df[n_entities < min_entities]


def run(
    spec: Spec,
    train_in: str,
    val_in: str,
    test_in: str,
    train_out: str,
    val_out: str,
    test_out: str,
    params_out: str,
    audit_out: str,
) -> CleanResult:
    """Drop bots from train, fit on train, apply to all three splits, write params + audit."""
    from kubeloop.components.core.io import read_table, write_table
    from kubeloop.components.core.schema import feature_columns

    frames = {
        "train": read_table(train_in, what="train split"),
        "val": read_table(val_in, what="val split"),
        "test": read_table(test_in, what="test split"),
    }
    counts: dict[str, dict[str, int]] = {}
    train = frames["train"]
    bot_min = spec.data.clean.bot_min_entities
    kept = drop_bots(train, spec, feature_columns(train, spec), bot_min)
    if kept.empty:
        raise DataError(f"clean: every training row looks bot-like ({len(train)} rows)")
    frames["train"] = kept
    params = fit(kept, spec)
    outputs = {"train": train_out, "val": val_out, "test": test_out}
    for name, frame in frames.items():
        cleaned, counts[name] = apply(frame, params)
        counts[name]["bot_rows"] = len(train) - len(kept) if name == "train" else 0
        write_table(cleaned.reset_index(drop=True), outputs[name])
    for path, text in (
        (params_out, params.model_dump_json(indent=2)),
        (audit_out, json.dumps(counts, indent=2)),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return CleanResult(
        rows={name: len(f) for name, f in frames.items()},
        counts=counts,
        params_path=params_out,
    )
