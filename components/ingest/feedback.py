"""Labelled serving traffic as training rows (``retrain.use_feedback``).

The prediction log's rows that have a label in the label log (joined by request id and row,
the latest label wins; shadow rows left out: they repeat a served row) become rows of the
source table: the logged raw features (for entity-id requests, the values the online store
gave the model), the label under ``data.label``, the entity id and the time of the
prediction under ``data.timestamp``. Skipped, and counted in the ingest audit:

* ``feedback_skipped_features``: the row lacks a feature column of the source (a model
  trained on other features served it);
* ``feedback_skipped_entity``: the source has an entity column but the row came as raw
  features (no entity id) and the column is numeric, so no made-up id fits it; text entity
  columns get ``feedback-<request_id>-<row>``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from kubeloop.components.core.spec import Spec


def feedback_rows(spec: Spec, source: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows shaped like `source` (its columns, no others) and the audit counts."""
    import pandas as pd

    from kubeloop.serving.feedback.join import labelled_rows

    d = spec.data
    audit = {"feedback_rows": 0, "feedback_skipped_features": 0, "feedback_skipped_entity": 0}
    if not spec.feedback_dir.is_dir():
        return source.iloc[:0], audit
    joined, _ = labelled_rows(spec)
    joined = joined[~joined["shadow"].astype(bool)]
    reserved = {d.label, d.entity, d.timestamp, *d.drop}
    features = [c for c in source.columns if c not in reserved]
    if d.features is not None:
        features = [c for c in features if c in d.features]
    entity_text = d.entity is not None and not pd.api.types.is_numeric_dtype(source[d.entity])
    out: list[dict[str, Any]] = []
    for r in joined.itertuples(index=False):
        row = json.loads(r.features)
        if any(c not in row for c in features):
            audit["feedback_skipped_features"] += 1
            continue
        record = {c: row[c] for c in features}
        record[d.label] = r.label
        if d.entity is not None:
            entity = _entity(r.entity_id, f"feedback-{r.request_id}-{r.row}", entity_text)
            if entity is None:
                audit["feedback_skipped_entity"] += 1
                continue
            record[d.entity] = entity
        if d.timestamp is not None:
            record[d.timestamp] = _timestamp(r.ts, source[d.timestamp])
        out.append(record)
    audit["feedback_rows"] = len(out)
    return (pd.DataFrame(out) if out else source.iloc[:0]), audit


def _entity(logged: str | None, made_up: str, text: bool) -> Any:
    if logged is None:
        return made_up if text else None
    if text:
        return logged
    try:
        return int(logged)
    except ValueError:
        return None


def _timestamp(ts: Any, column: pd.Series) -> Any:
    """The prediction time, in the form the source column has (datetimes or text)."""
    import pandas as pd

    stamp = pd.Timestamp(ts)
    if pd.api.types.is_datetime64_any_dtype(column):
        return stamp if column.dt.tz is not None else stamp.tz_convert("UTC").tz_localize(None)
    return stamp.isoformat()
