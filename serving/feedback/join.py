"""The offline join: label log x prediction log, by ``(request_id, row)``.

The latest label of a row wins; a row answered twice under one request id (a caller reusing
ids) keeps its latest answer. What ``kubeloop feedback report`` prints and what retraining
(``retrain.use_feedback``) reads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubeloop.serving.feedback.labels import read_labels
from kubeloop.serving.feedback.live import quality

if TYPE_CHECKING:
    import pandas as pd

    from kubeloop.components.core.spec import Spec

KEY = ["request_id", "row"]


def labelled_rows(spec: Spec) -> tuple[pd.DataFrame, int]:
    """Logged predictions with their latest label (column ``label``, decoded; ``labelled_at``)
    and how many labelled rows found no logged prediction."""
    import pandas as pd

    from kubeloop.serving.prediction_log import COLUMNS, read_prediction_log

    labels = read_labels(spec.feedback_dir).drop_duplicates(KEY, keep="last")
    labels = labels.rename(columns={"ts": "labelled_at"})[[*KEY, "label", "labelled_at"]]
    folder = spec.prediction_log_dir
    preds = read_prediction_log(folder) if folder.is_dir() else pd.DataFrame(columns=COLUMNS)
    preds = preds.drop_duplicates([*KEY, "shadow"], keep="last")
    out = preds.merge(labels, on=KEY, how="inner")
    served = out[~out["shadow"].astype(bool)]
    unmatched = len(labels) - len(served.drop_duplicates(KEY))
    out["label"] = out["label"].map(json.loads)
    return out.reset_index(drop=True), unmatched


def _task(group: pd.DataFrame) -> tuple[str, Any]:
    """(task, positive class) of one model from what it logged."""
    probs = group["probabilities"].dropna()
    if probs.empty:
        return "regression", None
    classes = list(json.loads(probs.iloc[0]))
    return ("binary", classes[1]) if len(classes) == 2 else ("multiclass", None)


def report(spec: Spec) -> dict[str, Any]:
    """Labelled rows and quality per variant and model (shadow included, as its own variant)."""
    rows, unmatched = labelled_rows(spec)
    variants = []
    for (variant, model), group in rows.groupby(["variant", "model"], sort=True):
        task, positive = _task(group)
        preds = group["prediction"].map(json.loads)
        scores: list[float | None] = [None] * len(group)
        if positive is not None:
            scores = [json.loads(p).get(str(positive), 0.0) for p in group["probabilities"]]
        triples = list(zip(preds, group["label"], scores, strict=True))
        variants.append(
            {
                "variant": variant,
                "model": model,
                "task": task,
                "labelled": len(group),
                "metrics": quality(task, triples, positive),
            }
        )
    return {
        "labels": len(read_labels(spec.feedback_dir).drop_duplicates(KEY)),
        "unmatched": unmatched,
        "variants": variants,
    }
