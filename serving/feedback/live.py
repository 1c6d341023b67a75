"""Live quality in the gateway: labels joined to recently served rows, exported as metrics.

The gateway remembers the last ``index_rows`` answered rows, ``(request_id, row)`` ->
``(variant, model, prediction, P(positive))``. A label that finds its row updates at once:

* ``kubeloop_gateway_feedback_labels_total`` and, for classifiers, the confusion counts
  ``..._feedback_outcomes_total`` (accuracy/precision/recall over any PromQL window), for
  regressors ``..._feedback_absolute_error``;
* ``kubeloop_gateway_live_quality{metric}`` over the last ``monitor.quality_window``
  labelled rows of that variant and model, once ``monitor.min_labels`` are labelled.

Shadow rows (the canary scoring mirrored stable traffic) get the label of their row too and
are measured as variant ``shadow``: the candidate's quality on the same rows as stable's,
before it serves anyone. ``joined`` counts served rows only. A row labelled twice counts once
here (the label log keeps both; the offline join takes the latest).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeloop.serving.metrics import GatewayMetrics

INDEX_ROWS = 100_000  # served rows remembered for joining (~30 MB)


@dataclass
class Served:
    """One answered row as the live join needs it."""

    variant: str
    model: str
    task: str
    prediction: Any  # class or value
    score: float | None  # P(positive class), binary only
    positive: Any = None  # the positive class, binary only
    labelled: bool = False


class LiveQuality:
    """The served-row index, the per-(variant, model) windows and their metrics."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        window: int,
        min_labels: int,
        index_rows: int = INDEX_ROWS,
    ) -> None:
        self.metrics = metrics
        self.window = window
        self.min_labels = min_labels
        self.index_rows = index_rows
        self._index: collections.OrderedDict[tuple[str, int, bool], Served] = (
            collections.OrderedDict()
        )
        # (variant, model) -> last `window` (prediction, label, score) triples
        self._windows: dict[tuple[str, str], collections.deque[tuple[Any, Any, float | None]]] = {}
        self._kinds: dict[tuple[str, str], tuple[str, Any]] = {}  # -> (task, positive class)
        self._initialised: set[tuple[str, str]] = set()  # (variant, model) with series
        self._lock = threading.Lock()

    def init_series(self, variant: str, model: str, task: str, classes: Sequence[Any]) -> None:
        """Create a served model's feedback series at 0 before its first label: Prometheus'
        increase() cannot count the first value of a series it never saw at 0."""
        if (variant, model) in self._initialised:
            return
        self._initialised.add((variant, model))
        m, vm = self.metrics, {"variant": variant, "model": model}
        m.feedback_labels.labels(**vm)
        if task == "regression":
            m.feedback_error.labels(**vm)
            return
        for p in classes:
            for a in classes:
                m.feedback_outcomes.labels(**vm, predicted_class=str(p), actual_class=str(a))

    def remember(self, request_id: str, rows: Sequence[tuple[int, Served]], shadow: bool) -> None:
        with self._lock:
            for row, served in rows:
                self._index[(request_id, row, shadow)] = served
            while len(self._index) > self.index_rows:
                self._index.popitem(last=False)

    def label(self, items: Sequence[tuple[str, int, Any]]) -> tuple[int, int]:
        """Join checked labels to served rows; (newly joined, already labelled) counts."""
        joined = relabelled = 0
        touched: set[tuple[str, str]] = set()
        with self._lock:
            for rid, row, label in items:
                for shadow in (False, True):
                    served = self._index.get((rid, row, shadow))
                    if served is None:
                        continue
                    if served.labelled:
                        relabelled += not shadow
                        continue
                    served.labelled = True
                    joined += not shadow
                    self._observe(served, label)
                    touched.add((served.variant, served.model))
            for key in touched:
                self._export(key)
        return joined, relabelled

    def _observe(self, served: Served, label: Any) -> None:
        m, vm = self.metrics, {"variant": served.variant, "model": served.model}
        m.feedback_labels.labels(**vm).inc()
        if served.task == "regression":
            m.feedback_error.labels(**vm).observe(abs(float(served.prediction) - float(label)))
        else:
            m.feedback_outcomes.labels(
                **vm, predicted_class=str(served.prediction), actual_class=str(label)
            ).inc()
        key = (served.variant, served.model)
        if key not in self._windows:
            self._windows[key] = collections.deque(maxlen=self.window)
            self._kinds[key] = (served.task, served.positive)
        self._windows[key].append((served.prediction, label, served.score))

    def _export(self, key: tuple[str, str]) -> None:
        rows = self._windows[key]
        if len(rows) < self.min_labels:
            return
        variant, model = key
        task, positive = self._kinds[key]
        gauge = self.metrics.live_quality
        for metric, value in quality(task, list(rows), positive).items():
            gauge.labels(variant=variant, model=model, metric=metric).set(value)


def quality(
    task: str, rows: Sequence[tuple[Any, Any, float | None]], positive: Any = None
) -> dict[str, float]:
    """(prediction, label, P(positive)) rows -> mae + rmse (regression), or accuracy, plus f1
    and roc_auc for a binary model (`positive` class given). roc_auc is left out while the
    rows hold one class only (it is undefined)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    if not rows:
        return {}
    if task == "regression":
        errors = [abs(float(p) - float(y)) for p, y, _ in rows]
        return {
            "mae": sum(errors) / len(errors),
            "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
        }
    predicted = [str(p) for p, _, _ in rows]
    actual = [str(y) for _, y, _ in rows]
    out = {"accuracy": float(accuracy_score(actual, predicted))}
    if task == "binary" and positive is not None:
        pos = str(positive)
        out["f1"] = float(f1_score(actual, predicted, pos_label=pos, average="binary"))
        truth = [int(y == pos) for y in actual]
        if 0 < sum(truth) < len(truth):
            scores = [
                s if s is not None else float(p == pos)
                for p, (_, _, s) in zip(predicted, rows, strict=True)
            ]
            out["roc_auc"] = float(roc_auc_score(truth, scores))
    return out
