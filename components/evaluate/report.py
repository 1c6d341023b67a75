"""The evaluation report: one self-contained HTML file (plots inlined as base64 PNG) and a
short Markdown summary."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display on pipeline pods / CI

import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from kubeloop.components.core.decision import predict_classes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kubeloop.components.core.spec import ResolvedTask, Spec
    from kubeloop.components.evaluate.task import EvalResult

MAX_CURVE_CLASSES = 10  # one-vs-rest curves drawn for at most this many classes


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _onevsrest(y: np.ndarray, proba: np.ndarray, classes: list[Any]) -> list[tuple[str, Any, Any]]:
    """(name, binary truth, score) per class curve; binary: the positive class only."""
    if proba.shape[1] == 2:
        return [(str(classes[1]), y == 1, proba[:, 1])]
    k = min(proba.shape[1], MAX_CURVE_CLASSES)
    return [(str(classes[i]), y == i, proba[:, i]) for i in range(k) if 0 < (y == i).sum() < len(y)]


def classification_plots(
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[Any],
    task: ResolvedTask,
    threshold: float | None,
    bins: int,
) -> dict[str, str]:
    plots: dict[str, str] = {}
    curves = _onevsrest(y, proba, classes)
    if curves:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for name, truth, score in curves:
            fpr, tpr, _ = skm.roc_curve(truth, score)
            ax.plot(fpr, tpr, label=name)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ax.legend(fontsize=7)
        plots["ROC curve"] = _png(fig)

        fig, ax = plt.subplots(figsize=(4.5, 4))
        for name, truth, score in curves:
            precision, recall, _ = skm.precision_recall_curve(truth, score)
            ax.plot(recall, precision, label=name)
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
        ax.legend(fontsize=7)
        plots["Precision-recall curve"] = _png(fig)

    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(int)
    if 0 < correct.sum() < len(correct):
        frac, mean_conf = calibration_curve(correct, conf, n_bins=bins, strategy="uniform")
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot(mean_conf, frac, "o-")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="top-class confidence", ylabel="accuracy", title="Calibration")
        plots["Calibration curve"] = _png(fig)

    y_hat = predict_classes(proba, task, threshold)
    cm = skm.confusion_matrix(y, y_hat, labels=list(range(proba.shape[1])))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay(cm, display_labels=[str(c) for c in classes]).plot(
        ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (test)")
    plots["Confusion matrix"] = _png(fig)
    return plots


def regression_plots(y: np.ndarray, pred: np.ndarray) -> dict[str, str]:
    plots: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(y, pred, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    plots["Predicted vs actual"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(pred, y - pred, s=6, alpha=0.5)
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
    plots["Residuals"] = _png(fig)
    return plots


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v if v is not None else ""))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _slice_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols = ["value", "n"]
    for r in rows:
        cols += [k for k in r if k not in cols and k != "skipped"]
    return [*cols, "skipped"]


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}
.pass{color:#16794d}.fail{color:#b00020}img{margin:4px;border:1px solid #eee}"""


def render_html(result: EvalResult, *, spec: Spec, y_true: np.ndarray, pred: np.ndarray) -> str:
    """The full report; `y_true`/`pred` are the test targets and predictions (plots)."""
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    if result.task == "regression":
        plots = regression_plots(y_true.astype(float), pred.astype(float))
    else:
        plots = classification_plots(
            y_true,
            pred,
            result.classes or [],
            result.task,
            result.threshold,
            spec.evaluate.calibration_bins,
        )
    gate = result.gate
    verdict = "PASSED" if gate.passed else "FAILED"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(spec.name)} evaluation</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(spec.name)}: evaluation report</h1>",
        f"<p>Task: {result.task}. Test rows: {result.n_test}; validation rows: {result.n_val}. "
        f"Primary metric: <b>{result.primary_metric}</b> = {result.primary_value:.4f} "
        f"({'higher' if result.higher_is_better else 'lower'} is better).",
    ]
    if result.threshold is not None:
        parts.append(
            f" Decision threshold {result.threshold:.4f} (chosen on validation by "
            f"{html.escape(spec.evaluate.threshold)})."
        )
    parts.append("</p>")
    parts.append(
        f"<h2>Gate: <span class='{'pass' if gate.passed else 'fail'}'>{verdict}</span></h2><ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in gate.reasons)
        + "</ul>"
    )
    parts.append("<h2>Champion comparison</h2>")
    if gate.champion_tag and gate.champion_value is not None:
        parts.append(
            _table(
                [
                    {"model": "candidate", result.primary_metric: gate.candidate_value},
                    {"model": gate.champion_tag, result.primary_metric: gate.champion_value},
                ],
                ["model", result.primary_metric],
            )
        )
    else:
        parts.append(f"<p>{html.escape(gate.champion_tag or 'no champion')}: not compared.</p>")
    parts.append("<h2>Test metrics</h2>")
    parts.append(
        _table([{"metric": k, "value": v} for k, v in result.metrics.items()], ["metric", "value"])
    )
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    for col, rows in result.slices.items():
        parts.append(f"<h2>Slices by {html.escape(col)}</h2>{_table(rows, _slice_columns(rows))}")
    parts.append("<h2>Plots</h2>")
    parts += [
        f"<figure style='display:inline-block'><img alt='{html.escape(t)}' "
        f"src='data:image/png;base64,{b64}'><figcaption>{html.escape(t)}</figcaption></figure>"
        for t, b64 in plots.items()
    ]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(result: EvalResult, *, spec: Spec) -> str:
    gate = result.gate
    lines = [
        f"# {spec.name}: evaluation",
        "",
        f"Gate: **{'PASSED' if gate.passed else 'FAILED'}** — {result.primary_metric} "
        f"{result.primary_value:.4f} on {result.n_test} test rows.",
        "",
        *[f"- {r}" for r in gate.reasons],
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in result.metrics.items()],
    ]
    if result.threshold is not None:
        lines += ["", f"Decision threshold (from validation): {result.threshold:.4f}"]
    return "\n".join(lines) + "\n"
