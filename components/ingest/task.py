"""Ingest: raw CSV/Parquet -> one normalized Parquet table with an audit of every fix.

What is fixed here (formats, not values): text categories are trimmed, lowercased and
their space/hyphen/underscore variants folded into one form ("Month-to-Month",
" month to month " -> "month_to_month"); the timestamp column is parsed from mixed
formats to UTC; mostly-numeric text ("$1,234.50") becomes float; rows without a label or
timestamp are dropped. Exact duplicate rows are dropped only when the spec names an entity
or a timestamp (then a repeated record is the same event sent twice); in a plain feature
table identical rows are separate observations, so they are kept (and counted).
Impossible values, outliers and nulls stay: validation must see them, and cleaning fits
its parameters on train only. With ``retrain.use_feedback`` the labelled serving traffic is
appended to the source first (:mod:`kubeloop.components.ingest.feedback`); the audit counts
it (``feedback_rows``, ``feedback_skipped_*``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.spec import DERIVED_ENTITY, DERIVED_TIMESTAMP, Spec

if TYPE_CHECKING:
    import pandas as pd

# A text column becomes numeric when at least this share of its non-null values parse.
NUMERIC_PARSE_SHARE = 0.95
# Text columns with at most this share of distinct values (or at most 20 distinct values)
# are categories and get normalized; above it they look like ids or free text and are
# left as they are.
CATEGORY_MAX_UNIQUE_SHARE = 0.5
CATEGORY_MIN_DISTINCT = 20


class IngestResult(BaseModel):
    rows_in: int
    rows_out: int
    columns: list[str]
    task: str
    fingerprint: str
    audit: dict[str, int]
    numeric_coerced: list[str] = []
    feedback_rows: int = 0  # labelled serving rows appended (retrain.use_feedback)


def _check_columns(df: pd.DataFrame, spec: Spec) -> None:
    d = spec.data
    cols = set(df.columns)
    for field, col in (("data.entity", d.entity), ("data.timestamp", d.timestamp)):
        if col is not None and col not in cols:
            raise DataError(
                f"{field}: column {col!r} not in {d.source} (columns: {sorted(map(str, cols))})"
            )
    missing = [c for c in (d.features or []) if c not in cols]
    if missing:
        raise DataError(f"data.features: column(s) {missing} not in {d.source}")


def _coerce_numeric(s: pd.Series) -> tuple[pd.Series, int] | None:
    """Parse "$1,234.50"-style text to float if >= 95% of values parse; else None."""
    import pandas as pd

    values = s.dropna()
    if values.empty:
        return None
    text = values.astype(str).str.strip().str.replace(r"[$,\s]", "", regex=True)
    parsed = pd.to_numeric(text, errors="coerce")
    if parsed.notna().mean() < NUMERIC_PARSE_SHARE:
        return None
    out = pd.Series(float("nan"), index=s.index, dtype="float64")
    out[parsed.index] = parsed.astype("float64")
    return out, int(parsed.isna().sum())


def _normalize_text(s: pd.Series) -> tuple[pd.Series, int]:
    """Trim, lowercase, fold runs of spaces/hyphens/underscores into one "_"."""
    mask = s.notna()
    before = s[mask].astype(str)
    after = before.str.strip().str.lower().str.replace(r"[\s_\-]+", "_", regex=True)
    out = s.copy()
    out[mask] = after
    return out, int((before != after).sum())


def _parse_timestamps(s: pd.Series) -> tuple[pd.Series, int]:
    """Mixed formats -> UTC datetimes (naive times are taken as UTC); counts failures."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s):
        ts = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return ts, 0
    parsed = pd.to_datetime(s, format="mixed", utc=True, errors="coerce")
    return parsed, int((s.notna() & parsed.isna()).sum())


def _row_ids(df: pd.DataFrame) -> pd.Series:
    """Content hash of each row: the same record gets the same id on every re-ingest,
    whatever the file order. Identical rows (kept in plain feature tables) get "-1", "-2"
    ... after the hash for their 2nd, 3rd ... copy, so ids stay unique."""
    import pandas as pd

    hashes = pd.util.hash_pandas_object(df, index=False)
    ids = hashes.map(lambda h: f"{int(h):016x}").astype(object)
    copy = hashes.groupby(hashes).cumcount()
    ids[copy > 0] = ids[copy > 0] + "-" + copy[copy > 0].astype(str)
    return ids


def normalize(
    df: pd.DataFrame, spec: Spec, now: datetime | None = None
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """The in-memory part of :func:`run`: returns (table, audit counts, coerced columns)."""
    import pandas as pd

    d = spec.data
    audit = {
        "rows_in": len(df),
        "numeric_unparseable": 0,
        "text_normalized": 0,
        "timestamp_unparseable": 0,
        "missing_timestamp": 0,
        "duplicate_rows": 0,
        "duplicate_rows_kept": 0,
        "missing_label": 0,
    }
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    skip = {d.entity, d.timestamp}
    coerced: list[str] = []
    for col in df.columns:
        if col in skip or not (
            pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])
        ):
            continue
        numeric = _coerce_numeric(df[col])
        if numeric is not None:
            df[col], failed = numeric
            audit["numeric_unparseable"] += failed
            coerced.append(col)
            continue
        normalized, changed = _normalize_text(df[col])
        n_values = int(normalized.notna().sum())
        n_distinct = normalized.nunique()
        if col == d.label or n_distinct <= max(
            CATEGORY_MIN_DISTINCT, CATEGORY_MAX_UNIQUE_SHARE * n_values
        ):
            df[col] = normalized
            audit["text_normalized"] += changed

    if d.timestamp is not None:
        df[d.timestamp], audit["timestamp_unparseable"] = _parse_timestamps(df[d.timestamp])
        missing_ts = df[d.timestamp].isna()
        audit["missing_timestamp"] = int(missing_ts.sum())
        df = df[~missing_ts]

    if d.entity is not None or d.timestamp is not None:
        before = len(df)
        df = df.drop_duplicates()
        audit["duplicate_rows"] = before - len(df)
    else:
        audit["duplicate_rows_kept"] = int(df.duplicated().sum())

    if d.label in df.columns:
        missing_label = df[d.label].isna()
        audit["missing_label"] = int(missing_label.sum())
        df = df[~missing_label]
        y = df[d.label]
        # "1.0"/"0.0" (a float column because some labels were empty) -> integer classes.
        if pd.api.types.is_float_dtype(y) and len(y) and (y == y.round()).all():
            df[d.label] = y.astype("int64")
    df = df.reset_index(drop=True)

    if d.entity is None:
        df[DERIVED_ENTITY] = _row_ids(df)
    if d.timestamp is None:
        # One ingestion time for the whole batch (naive `now` is taken as UTC).
        stamp = pd.Timestamp((now or datetime.now(UTC)).replace(microsecond=0))
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        df[DERIVED_TIMESTAMP] = stamp
    audit["rows_out"] = len(df)
    return df, audit, coerced


def run(spec: Spec, out_path: str, audit_path: str, *, now: datetime | None = None) -> IngestResult:
    """Read `spec.data.source`, normalize it, write Parquet + audit JSON."""
    from kubeloop.components.core.io import fingerprint, read_table, write_table
    from kubeloop.components.core.schema import resolve_task

    raw = read_table(spec.data.source, what="data.source")
    _check_columns(raw, spec)
    if spec.data.label not in raw.columns:
        resolve_task(raw, spec)  # raises the DataError naming the columns
    extra: dict[str, int] = {}
    if spec.retrain.use_feedback:
        import pandas as pd

        from kubeloop.components.ingest.feedback import feedback_rows

        rows, extra = feedback_rows(spec, raw)
        if len(rows):
            raw = pd.concat([raw, rows], ignore_index=True)
    df, audit, coerced = normalize(raw, spec, now=now)
    audit.update(extra)
    if df.empty:
        raise DataError(
            f"data.source: no rows left after ingest of {spec.data.source} "
            f"(audit: {audit}); check data.label and data.timestamp"
        )
    task = resolve_task(df, spec)
    write_table(df, out_path)
    Path(audit_path).parent.mkdir(parents=True, exist_ok=True)
    Path(audit_path).write_text(json.dumps(audit, indent=2))
    return IngestResult(
        rows_in=audit["rows_in"],
        rows_out=len(df),
        columns=list(df.columns),
        task=task,
        fingerprint=fingerprint(df),
        audit=audit,
        numeric_coerced=coerced,
        feedback_rows=audit.get("feedback_rows", 0),
    )
