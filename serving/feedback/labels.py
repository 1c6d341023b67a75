"""The label log: ground-truth labels as Parquet, joined to the prediction log later.

Every label the gateway receives (``POST /feedback``) or ``kubeloop feedback import`` reads is
appended here, joined to a served row or not, so an offline join sees labels whose row the
gateway no longer remembers (restarts, other replicas). One call writes one part, beside its
final name and renamed into place (a reader never sees half a file, a failed write leaves
nothing), in the prediction log's layout::

    <spec.feedback_dir>/date=YYYY-MM-DD/part-<UTC HHMMSSffffff>-<uuid8>.parquet

Labels are checked against the model's task before they are written: a class label must be
one of the model's classes (matched by its text, so ``"1"`` from a CSV is class ``1``) and is
stored as that class; a regression label must be a finite number. ``label`` holds the JSON
of the checked value, as the prediction log holds predictions.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop.components.core.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

PART_GLOB = "date=*/part-*.parquet"


@dataclass(frozen=True, slots=True)
class LabelRecord:
    ts: datetime  # UTC, when the label was received
    request_id: str
    row: int  # row index within the request (0 for /predict)
    label: str  # JSON of the checked label
    source: str  # "api" | the imported file's name


COLUMNS = [f.name for f in fields(LabelRecord)]


class LabelError(ValueError):
    """A label that does not fit the model's task (the message says what was expected)."""


def arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("label", pa.string()),
            ("source", pa.string()),
        ]
    )


def check_label(value: Any, task: str, classes: Sequence[Any]) -> Any:
    """The label as the model's own class (classification) or a float (regression)."""
    if task == "regression":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LabelError(f"expected a number for a regression model, got {value!r}")
        if not math.isfinite(value):
            raise LabelError(f"expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 from a float column is class 1
    by_text = {str(c): c for c in classes}
    if isinstance(value, dict | list) or value is None or str(value) not in by_text:
        raise LabelError(f"expected one of the model's classes {list(classes)}, got {value!r}")
    return by_text[str(value)]


def records(
    items: Sequence[tuple[str, int, Any]], source: str, ts: datetime | None = None
) -> list[LabelRecord]:
    """(request_id, row, checked label) triples -> records stamped `ts` (default now)."""
    stamp = ts or datetime.now(UTC)
    return [LabelRecord(stamp, rid, row, json.dumps(label), source) for rid, row, label in items]


def write_labels(folder: str | Path, batch: Sequence[LabelRecord]) -> Path | None:
    """Append `batch` as one part (atomic); returns its path, None for an empty batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not batch:
        return None
    first = batch[0].ts.astimezone(UTC)
    columns = {c: [getattr(r, c) for r in batch] for c in COLUMNS}
    table = pa.Table.from_pydict(columns, schema=arrow_schema())
    name = f"part-{first.strftime('%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    path = Path(folder) / f"date={first.strftime('%Y-%m-%d')}" / name
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_labels(folder: str | Path) -> pd.DataFrame:
    """Every label under `folder` sorted by ts; empty (same columns) if there is none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    parts = sorted(Path(folder).glob(PART_GLOB)) if Path(folder).is_dir() else []
    tables = [pq.read_table(p, schema=schema) for p in parts]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.to_pandas().sort_values(["ts"], kind="stable", ignore_index=True)
