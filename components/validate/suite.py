"""Expectations: the spec's list, or one suggested from a reference snapshot; run with GX.

Only imported inside `validate.task.run`, so heavy imports at the top are fine here.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from pydantic import BaseModel

from kubeloop.components.core.spec import Expectation, Spec

# dtype names per type family, as GX's ExpectColumnValuesToBeInTypeList understands them.
# Datetime columns are validated as naive UTC (GX does not match tz-aware dtypes).
TYPE_FAMILIES: dict[str, list[str]] = {
    "numeric": [
        *(f"{p}{b}" for p in ("int", "uint") for b in (8, 16, 32, 64)),
        *(f"float{b}" for b in (16, 32, 64)),
        *(f"{p}{b}" for p in ("Int", "UInt") for b in (8, 16, 32, 64)),
        "Float32",
        "Float64",
    ],
    "boolean": ["bool", "boolean", "BooleanDtype"],
    "datetime": [f"datetime64[{u}]" for u in ("ns", "us", "ms", "s")],
    "string": ["str", "object", "string", "StringDtype", "CategoricalDtype"],
}
# String columns with at most this many distinct values get an in-set expectation.
MAX_SET_SIZE = 50
RANGE_MARGIN = 0.1  # numeric ranges widened by 10% of the reference span each side


class Check(BaseModel):
    """One expectation as kubeloop reports it (column None: a table-level check)."""

    kind: str
    column: str | None
    severity: str
    expected: str
    kwargs: dict[str, Any]
    success: bool | None = None
    observed: str = ""


def type_family(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    return "string"


def from_spec(expectations: list[Expectation]) -> list[Check]:
    checks = []
    for e in expectations:
        kw: dict[str, Any] = {}
        if e.kind == "not_null":
            kw, exp = {"mostly": e.mostly}, "no missing values"
        elif e.kind == "between":
            kw = {"min_value": e.min, "max_value": e.max, "mostly": e.mostly}
            exp = f"values in [{e.min}, {e.max}]"
        elif e.kind == "in_set":
            kw, exp = {"value_set": e.values or [], "mostly": e.mostly}, f"values in {e.values}"
        elif e.kind == "unique":
            kw, exp = {"mostly": e.mostly}, "unique values"
        elif e.kind == "type":
            family = e.type or "string"
            kw = {"type_list": TYPE_FAMILIES.get(family, [family])}
            exp = f"type {family}"
        elif e.kind == "row_count":
            kw = {"min_value": e.min, "max_value": e.max}
            exp = f"row count in [{e.min}, {e.max}]"
        elif e.kind == "columns":
            kw, exp = {"column_set": e.values or [], "exact_match": True}, f"columns {e.values}"
        else:  # null_fraction: between min and max
            lo, hi = e.min or 0.0, 1.0 if e.max is None else e.max
            kw = {"min_value": 1.0 - hi, "max_value": 1.0 - lo}
            exp = f"null fraction in [{lo}, {hi}]"
        checks.append(
            Check(kind=e.kind, column=e.column, severity=e.severity, expected=exp, kwargs=kw)
        )
    return checks


def suggest(ref: pd.DataFrame, spec: Spec) -> list[Check]:
    """A suite that blocks schema/type changes and empty columns, warns on value drift."""
    v, d = spec.validation, spec.data
    block = v.suggest_severity
    cols = [str(c) for c in ref.columns]
    checks = [
        Check(
            kind="columns",
            column=None,
            severity=block,
            expected=f"exactly columns {cols}",
            kwargs={"column_set": cols, "exact_match": True},
        ),
        Check(
            kind="row_count",
            column=None,
            severity=block,
            expected="at least 1 row",
            kwargs={"min_value": 1},
        ),
        Check(
            kind="not_null",
            column=d.label,
            severity=block,
            expected="label never missing",
            kwargs={},
        ),
    ]
    for col in cols:
        s = ref[col]
        family = type_family(s)
        checks.append(
            Check(
                kind="type",
                column=col,
                severity=block,
                expected=f"type {family}",
                kwargs={"type_list": TYPE_FAMILIES[family]},
            )
        )
        allowed = min(max(v.max_null_fraction, float(s.isna().mean()) + 0.1), 1.0)
        checks.append(
            Check(
                kind="null_fraction",
                column=col,
                severity=block,
                expected=f"null fraction <= {allowed:.3g} and not entirely null",
                # GX checks the non-null share; > 0 so an all-null column always fails.
                kwargs={"min_value": max(1.0 - allowed, 1e-9)},
            )
        )
        values = s.dropna()
        if values.empty or col in (d.entity_column, d.timestamp_column):
            continue
        if family == "numeric":
            lo, hi = float(values.min()), float(values.max())
            margin = RANGE_MARGIN * (hi - lo) or RANGE_MARGIN * max(abs(lo), 1.0)
            checks.append(
                Check(
                    kind="between",
                    column=col,
                    severity="warn",
                    expected=f"values in [{lo - margin:.4g}, {hi + margin:.4g}] (99%)",
                    kwargs={"min_value": lo - margin, "max_value": hi + margin, "mostly": 0.99},
                )
            )
        elif family == "string" and values.nunique() <= MAX_SET_SIZE:
            value_set = sorted(map(str, values.unique()))
            checks.append(
                Check(
                    kind="in_set",
                    column=col,
                    severity="warn",
                    expected=f"values in {value_set} (95%)",
                    kwargs={"value_set": value_set, "mostly": 0.95},
                )
            )
    return checks


_GX_CLASSES = {
    "not_null": "ExpectColumnValuesToNotBeNull",
    "between": "ExpectColumnValuesToBeBetween",
    "in_set": "ExpectColumnValuesToBeInSet",
    "unique": "ExpectColumnValuesToBeUnique",
    "type": "ExpectColumnValuesToBeInTypeList",
    "row_count": "ExpectTableRowCountToBeBetween",
    "columns": "ExpectTableColumnsToMatchSet",
    "null_fraction": "ExpectColumnProportionOfNonNullValuesToBeBetween",
}


def _observed(result: Any) -> str:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        msg = str(info.get("exception_message") or "error").splitlines()[0]
        return f"error: {msg[:200]}"
    res = result.result or {}
    if "observed_value" in res:
        obs = res["observed_value"]
        return f"{obs:.4g}" if isinstance(obs, float) else str(obs)[:300]
    if res.get("unexpected_percent") is not None:
        sample = res.get("partial_unexpected_list") or []
        return f"{res['unexpected_percent']:.3g}% unexpected, e.g. {sample[:3]}"
    return ""


def run_checks(df: pd.DataFrame, checks: list[Check]) -> list[Check]:
    """Validate `df` with Great Expectations (ephemeral context); returns checks with results."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX compares dtypes, and does not match tz-aware ones: validate datetimes as naive UTC.
    frame = df.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("kubeloop").add_dataframe_asset(name="data")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite(name="kubeloop")
    out = [c.model_copy() for c in checks]
    for i, c in enumerate(checks):
        if c.column is not None and c.column not in frame.columns:
            out[i].success, out[i].observed = False, "column missing"
            continue
        kwargs = dict(c.kwargs)
        if c.column is not None:
            kwargs["column"] = c.column
        cls = getattr(gx.expectations, _GX_CLASSES[c.kind])
        suite.add_expectation(cls(**kwargs, meta={"kubeloop_index": i}))
    result = batch.validate(suite, result_format="SUMMARY")
    # GX does not keep the suite's order: match results back through `meta`.
    for r in result.results:
        assert r.expectation_config is not None
        i = int((r.expectation_config.meta or {})["kubeloop_index"])
        out[i].success = bool(r.success)
        out[i].observed = _observed(r)
        obs = (r.result or {}).get("observed_value")
        if out[i].kind == "null_fraction" and isinstance(obs, float | int):
            out[i].observed = f"null fraction {1.0 - obs:.3g}"
        elif out[i].kind == "columns":
            expected, seen = set(out[i].kwargs["column_set"]), set(map(str, frame.columns))
            out[
                i
            ].observed = f"missing {sorted(expected - seen)}, unexpected {sorted(seen - expected)}"
    return out
