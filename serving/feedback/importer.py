"""Batch import of labels (``kubeloop feedback import``): a CSV or Parquet file -> label log.

Everything is checked before anything is written: the columns, every request id, row and
label (against the model's task and classes). One bad value fails the whole file with an
error naming the file, the column and the first bad rows; a good file becomes one part of
the label log (atomic), so an import is all or nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.feedback.labels import LabelError, check_label, records, write_labels

SHOWN_ERRORS = 5  # bad rows named in the error message


@dataclass(frozen=True)
class Columns:
    request_id: str = "request_id"
    row: str = "row"
    label: str = "label"


def _read(path: Path, columns: Columns) -> Any:
    import pandas as pd

    if not path.is_file():
        raise KubeloopError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Ids stay text: "0042" or an all-digit uuid hex must not become a number.
            return pd.read_csv(path, dtype={columns.request_id: str}, keep_default_na=True)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise KubeloopError(f"{path}: file is empty") from None
    except (OSError, ValueError) as err:
        raise KubeloopError(f"{path}: cannot read: {err}") from None
    raise KubeloopError(f"{path}: expected a .csv or .parquet file, got {suffix or 'no suffix'!r}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fail(path: Path, column: str, bad: list[str], n: int) -> KubeloopError:
    more = f" (and {n - len(bad)} more)" if n > len(bad) else ""
    return KubeloopError(f"{path}: column {column!r}: {'; '.join(bad)}{more}")


def parse(
    path: Path, task: str, classes: list[Any], columns: Columns = Columns()
) -> list[tuple[str, int, Any]]:
    """Checked (request_id, row, label) triples of the file, or a KubeloopError."""
    df = _read(path, columns)
    missing = [c for c in (columns.request_id, columns.label) if c not in df.columns]
    if missing:
        raise KubeloopError(
            f"{path}: missing column(s) {missing}; expected {columns.request_id!r}, "
            f"{columns.label!r} and optionally {columns.row!r} (columns: {list(df.columns)})"
        )
    if df.empty:
        raise KubeloopError(f"{path}: no rows")
    ids = df[columns.request_id].tolist()
    rows = df[columns.row].tolist() if columns.row in df.columns else [0] * len(df)
    labels = df[columns.label].tolist()
    checks: list[tuple[str, list[Any], Any]] = [
        (columns.request_id, ids, _check_id),
        (columns.row, rows, _check_row),
        (columns.label, labels, lambda v: _check_value(v, task, classes)),
    ]
    out: dict[str, list[Any]] = {}
    for column, values, check in checks:
        good, bad = [], []
        for i, value in enumerate(values):
            try:
                good.append(check(value))
            except LabelError as err:
                bad.append(f"line {i + 2 if path.suffix.lower() == '.csv' else i}: {err}")
        if bad:
            raise _fail(path, column, bad[:SHOWN_ERRORS], len(bad))
        out[column] = good
    return list(zip(out[columns.request_id], out[columns.row], out[columns.label], strict=True))


def _check_id(value: Any) -> str:
    if _missing(value) or not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise LabelError(f"expected a request id (1-200 characters of text), got {value!r}")
    return value


def _check_row(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LabelError(f"expected a row index (a whole number >= 0), got {value!r}")
    return value


def _check_value(value: Any, task: str, classes: list[Any]) -> Any:
    if _missing(value):
        raise LabelError("missing label")
    if task == "regression" and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise LabelError(f"expected a number, got {value!r}") from None
    return check_label(value, task, classes)


def import_labels(
    path: Path, folder: Path, task: str, classes: list[Any], columns: Columns = Columns()
) -> int:
    """Check the whole file, then append it to the label log; returns the labels written."""
    items = parse(path, task, classes, columns)
    write_labels(folder, records(items, path.name))
    return len(items)
