"""Evaluation metrics, the binary decision threshold, and per-slice metrics.

Conventions used throughout:

* Classification labels are *class indices* ``0..k-1`` into the predictor's ``classes``
  (see :func:`encode_labels`); probabilities are an ``(n, k)`` array, one column per class.
  For binary tasks the positive class is ``classes[1]`` (column 1).
* Regression predictions are a 1-d array.
* A metric that is undefined on the given rows (ROC AUC with one class present, ...) is
  left out of the returned dict and explained in ``notes`` rather than reported as NaN,
  so every number that is reported is real and JSON-serializable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from kubeloop.components.core.decision import predict_classes
from kubeloop.components.core.errors import DataError, SpecError
from kubeloop.components.core.spec import ResolvedTask

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "ece",
    "log_loss",
)
BINARY_ONLY_METRICS = ("brier",)
REGRESSION_METRICS = ("mae", "rmse", "r2")
LOWER_IS_BETTER = frozenset({"ece", "log_loss", "brier", "mae", "rmse"})
# Names accepted in the spec as synonyms (the spec docs call the multiclass default f1_macro).
ALIASES = {"f1_macro": "f1", "precision_macro": "precision", "recall_macro": "recall"}
DEFAULT_PRIMARY: dict[str, str] = {"binary": "roc_auc", "multiclass": "f1", "regression": "rmse"}
MIN_SLICE_ROWS = 20


def available_metrics(task: ResolvedTask) -> list[str]:
    if task == "regression":
        return list(REGRESSION_METRICS)
    if task == "binary":
        return [*CLASSIFICATION_METRICS, *BINARY_ONLY_METRICS]
    return list(CLASSIFICATION_METRICS)


def canonical_metric(name: str, task: ResolvedTask, *, field: str) -> str:
    """The metric's canonical name; a SpecError naming `field` if the task has no such metric."""
    canon = ALIASES.get(name, name)
    if canon not in available_metrics(task):
        raise SpecError(
            f"{field}: unknown metric {name!r} for a {task} task; "
            f"available: {', '.join(available_metrics(task))}"
        )
    return canon


def higher_is_better(metric: str) -> bool:
    return ALIASES.get(metric, metric) not in LOWER_IS_BETTER


def primary_metric(task: ResolvedTask, configured: str | None) -> str:
    if configured is None:
        return DEFAULT_PRIMARY[task]
    return canonical_metric(configured, task, field="evaluate.metric")


def encode_labels(y: Sequence[Any] | pd.Series, classes: Sequence[Any]) -> np.ndarray:
    """Map original label values to indices into `classes` (matching str forms as a fallback,
    since labels may round-trip through JSON as strings)."""
    index = {c: i for i, c in enumerate(classes)}
    by_str = {str(c): i for i, c in enumerate(classes)}
    out = np.empty(len(y), dtype=np.int64)
    unknown: set[str] = set()
    for j, v in enumerate(y):
        i = index.get(v)
        if i is None:
            i = by_str.get(str(v))
        if i is None:
            unknown.add(str(v))
            i = -1
        out[j] = i
    if unknown:
        raise DataError(
            f"label value(s) {sorted(unknown)[:10]} were not seen in training "
            f"(model classes: {list(classes)})"
        )
    return out


def choose_threshold(
    y_true: np.ndarray, p_pos: np.ndarray, method: str, fixed: float = 0.5
) -> tuple[float, str | None]:
    """Binary decision threshold (predict positive when ``p >= threshold``) and a note.

    "f1" maximizes F1, "youden" maximizes TPR - FPR, "fixed" returns `fixed`. Chosen on the
    validation split only; falls back to `fixed` when validation holds a single class.
    """
    if method == "fixed":
        return float(fixed), None
    if len(np.unique(y_true)) < 2:
        return float(fixed), (
            f"validation split has a single class; threshold {fixed} used instead of {method}"
        )
    if method == "f1":
        precision, recall, thresholds = skm.precision_recall_curve(y_true, p_pos)
        # The last (precision, recall) pair has no threshold (it is the "predict none" point).
        p, r = precision[:-1], recall[:-1]
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        return float(thresholds[int(np.argmax(f1))]), None
    if method == "youden":
        fpr, tpr, thresholds = skm.roc_curve(y_true, p_pos)
        best = int(np.argmax(tpr - fpr))
        # roc_curve's first threshold is +inf ("predict none"); cap it to a probability.
        return float(min(thresholds[best], 1.0)), None
    raise SpecError(f"evaluate.threshold: expected f1, youden or fixed, got {method!r}")


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """ECE on the top-class confidence: sum over equal-width bins of
    (bin share of rows) * |accuracy in bin - mean confidence in bin|.

    Bins are (0, 1/B], (1/B, 2/B], ..., right-inclusive; sklearn has no ECE, only the curve.
    """
    proba = np.asarray(proba, dtype=float)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    task: ResolvedTask,
    *,
    threshold: float | None = None,
    calibration_bins: int = 10,
    notes: list[str] | None = None,
) -> dict[str, float]:
    """All classification metrics; undefined ones are skipped and explained in `notes`."""
    notes = [] if notes is None else notes
    proba = np.asarray(proba, dtype=float)
    # float32 network outputs sum to 1 only approximately; sklearn warns on that.
    proba = proba / proba.sum(axis=1, keepdims=True)
    k = proba.shape[1]
    labels = list(range(k))
    y_hat = predict_classes(proba, task, threshold)
    avg: dict[str, Any] = (
        {"average": "binary", "pos_label": 1} if task == "binary" else {"average": "macro"}
    )
    out: dict[str, float] = {
        "accuracy": skm.accuracy_score(y_true, y_hat),
        "precision": skm.precision_score(y_true, y_hat, labels=labels, zero_division=0, **avg),
        "recall": skm.recall_score(y_true, y_hat, labels=labels, zero_division=0, **avg),
        "f1": skm.f1_score(y_true, y_hat, labels=labels, zero_division=0, **avg),
        "ece": expected_calibration_error(y_true, proba, calibration_bins),
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=labels),
    }
    present = np.unique(y_true)
    if task == "binary":
        out["brier"] = skm.brier_score_loss(y_true, proba[:, 1], pos_label=1)
        if len(present) == 2:
            out["roc_auc"] = skm.roc_auc_score(y_true, proba[:, 1])
            out["pr_auc"] = skm.average_precision_score(y_true, proba[:, 1])
        else:
            notes.append("roc_auc and pr_auc undefined: only one class present")
    elif len(present) == k:
        out["roc_auc"] = skm.roc_auc_score(
            y_true, proba, multi_class="ovr", average="macro", labels=labels
        )
        onehot = np.eye(k)[y_true]
        out["pr_auc"] = skm.average_precision_score(onehot, proba, average="macro")
    else:
        notes.append(
            f"roc_auc and pr_auc undefined: {k - len(present)} of {k} classes absent from the rows"
        )
    return {m: float(v) for m, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    out = {
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "rmse": skm.root_mean_squared_error(y_true, y_pred),
    }
    if len(y_true) >= 2:
        out["r2"] = skm.r2_score(y_true, y_pred)
    return {m: float(v) for m, v in out.items()}


def compute_metrics(
    y_true: np.ndarray,
    pred: np.ndarray,
    task: ResolvedTask,
    *,
    threshold: float | None = None,
    calibration_bins: int = 10,
    notes: list[str] | None = None,
) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y_true, pred)
    return classification_metrics(
        y_true, pred, task, threshold=threshold, calibration_bins=calibration_bins, notes=notes
    )


SLICE_METRICS = {
    "binary": ("accuracy", "f1", "roc_auc", "pr_auc"),
    "multiclass": ("accuracy", "f1", "roc_auc"),
    "regression": ("mae", "rmse", "r2"),
}


def _slice_keys(values: pd.Series) -> pd.Series:
    """Category per row; numeric columns with many values are cut into quartiles."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > MIN_SLICE_ROWS:
        binned = pd.qcut(values, q=4, duplicates="drop")
        return binned.astype(str).where(values.notna(), "(missing)")
    return values.astype(object).where(values.notna(), "(missing)").astype(str)


def slice_metrics(
    df: pd.DataFrame,
    y_true: np.ndarray,
    y_pred_proba: np.ndarray,
    column: str,
    *,
    task: ResolvedTask = "binary",
    threshold: float | None = None,
    min_rows: int = MIN_SLICE_ROWS,
) -> list[dict[str, Any]]:
    """Main metrics per category of `column` (rows aligned with `y_true`/`y_pred_proba`).

    Each entry: ``{"value", "n", <metrics>...}`` or ``{"value", "n", "skipped": reason}``
    for slices with fewer than `min_rows` rows or (classification) a single class.
    """
    if column not in df.columns:
        raise SpecError(
            f"evaluate.slice_by: column {column!r} not in the evaluation frame "
            f"(columns: {sorted(map(str, df.columns))})"
        )
    keys = _slice_keys(df[column]).to_numpy()
    y_true = np.asarray(y_true)
    pred = np.asarray(y_pred_proba)
    rows: list[dict[str, Any]] = []
    for value in sorted(set(keys.tolist()), key=str):
        mask = keys == value
        n = int(mask.sum())
        entry: dict[str, Any] = {"value": str(value), "n": n}
        if n < min_rows:
            entry["skipped"] = f"only {n} rows (< {min_rows})"
        elif task != "regression" and len(np.unique(y_true[mask])) < 2:
            entry["skipped"] = "a single class in this slice"
        else:
            m = compute_metrics(y_true[mask], pred[mask], task, threshold=threshold)
            entry.update({k: m[k] for k in SLICE_METRICS[task] if k in m})
        rows.append(entry)
    return rows
