"""Evaluate a trained model and gate it: minimums/maximums on test metrics, then the champion.

The decision threshold (binary) is chosen on the validation split and applied on test. The
gate passes only when every configured floor/ceiling holds and, if a champion is registered,
the candidate beats it on the *same test rows* by ``evaluate.champion_margin`` on the primary
metric (strictly: a tie never passes, so re-running on unchanged data registers nothing
new). The champion scores those rows as they were before this run's cleaning (the split
output), through its own registered preprocessing.

Choice: if the champion cannot score these rows (its features are missing from the frame,
e.g. after a feature-service change, or it fails to load, or it has another task or label
classes), the comparison is skipped — not failed — and a reason says so. A model trained on
a deliberately different feature set cannot be compared on equal terms; the minimums still
apply, and the reason is visible in the report and the run record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import ResolvedTask, Spec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kubeloop.components.register.registry import PredictorLoader, PreprocessLoader


class GateResult(BaseModel):
    # NaN (a metric that could not be computed) round-trips as the JSON constant NaN.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    passed: bool
    reasons: list[str]
    champion_tag: str | None = None
    champion_value: float | None = None
    candidate_value: float


class EvalResult(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    task: ResolvedTask
    metrics: dict[str, float]
    primary_metric: str
    primary_value: float
    higher_is_better: bool
    threshold: float | None
    slices: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    gate: GateResult
    classes: list[Any] | None = None  # original label values; index i = probability column i
    n_val: int = 0
    n_test: int = 0
    notes: list[str] = Field(default_factory=list)  # metrics left out and why, fallbacks


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _targets(df: pd.DataFrame, label: str, task: str, classes: list[Any] | None) -> np.ndarray:
    import numpy as np

    from kubeloop.components.core.errors import DataError
    from kubeloop.components.evaluate.metrics import encode_labels

    if label not in df.columns:
        raise DataError(f"data.label: column {label!r} not in the evaluation frame")
    if df[label].isna().any():
        raise DataError(f"data.label: column {label!r} has missing values in the evaluation frame")
    if task == "regression":
        return df[label].to_numpy(dtype=float)
    return np.asarray(encode_labels(df[label], classes or []))


def _check_thresholds(spec: Spec, task: ResolvedTask) -> tuple[dict[str, float], dict[str, float]]:
    from kubeloop.components.evaluate.metrics import canonical_metric

    ev = spec.evaluate
    mins = {canonical_metric(m, task, field="evaluate.minimums"): v for m, v in ev.minimums.items()}
    maxs = {canonical_metric(m, task, field="evaluate.maximums"): v for m, v in ev.maximums.items()}
    return mins, maxs


def _bound_reasons(
    metrics: dict[str, float], mins: dict[str, float], maxs: dict[str, float]
) -> tuple[bool, list[str]]:
    ok, reasons = True, []
    for bounds, op, bad_op, word, holds in (
        (mins, ">=", "<", "minimum", lambda v, b: v >= b),
        (maxs, "<=", ">", "maximum", lambda v, b: v <= b),
    ):
        for m, bound in bounds.items():
            if m not in metrics:
                ok = False
                reasons.append(
                    f"FAILED: {m} could not be computed on the test split ({word} {bound})"
                )
            elif holds(metrics[m], bound):
                reasons.append(f"{m} {_fmt(metrics[m])} {op} {word} {_fmt(bound)}")
            else:
                ok = False
                reasons.append(f"FAILED: {m} {_fmt(metrics[m])} {bad_op} {word} {_fmt(bound)}")
    return ok, reasons


def _champion_value(
    spec: Spec,
    task: ResolvedTask,
    classes: list[Any] | None,
    primary: str,
    val: pd.DataFrame,
    test: pd.DataFrame,
    y_val: np.ndarray,
    y_test: np.ndarray,
    predictor_loader: PredictorLoader | None,
    preprocess_loader: PreprocessLoader | None,
) -> tuple[str | None, float | None, str | None]:
    """(champion tag, its primary value on these rows, why it was not compared)."""
    from kubeloop.components.evaluate.metrics import choose_threshold, compute_metrics
    from kubeloop.components.register import registry

    info = registry.champion(spec.name)
    if info is None:
        return None, None, None
    kwargs: dict[str, Any] = {}
    if predictor_loader is not None:
        kwargs["predictor_loader"] = predictor_loader
    if preprocess_loader is not None:
        kwargs["preprocess_loader"] = preprocess_loader
    try:
        champ = registry.load(info.tag, **kwargs)
    except Exception as err:  # a broken champion must not block a good candidate
        return info.tag, None, f"champion {info.tag} could not be loaded ({err})"
    missing = [c for c in champ.features if c not in test.columns]
    if missing:
        return info.tag, None, f"champion {info.tag} cannot score these rows: missing {missing}"
    if champ.task != task:
        return info.tag, None, f"champion {info.tag} is a {champ.task} model, not {task}"
    if task != "regression" and [str(c) for c in champ.classes] != [str(c) for c in classes or []]:
        return info.tag, None, f"champion {info.tag} has other classes {champ.classes}"
    try:
        test_pred = champ.predict(test)
        threshold = None
        if task == "binary":
            threshold, _ = choose_threshold(
                y_val,
                champ.predict(val)[:, 1],
                spec.evaluate.threshold,
                spec.evaluate.fixed_threshold,
            )
        metrics = compute_metrics(
            y_test,
            test_pred,
            task,
            threshold=threshold,
            calibration_bins=spec.evaluate.calibration_bins,
        )
    except Exception as err:
        return info.tag, None, f"champion {info.tag} failed to score these rows ({err})"
    if primary not in metrics:
        return info.tag, None, f"{primary} undefined for champion {info.tag} on these rows"
    return info.tag, metrics[primary], None


def run(
    spec: Spec,
    model_dir: str,
    val_path: str,
    test_path: str,
    report_html: str,
    metrics_json: str,
    *,
    predictor_loader: PredictorLoader | None = None,
    preprocess_loader: PreprocessLoader | None = None,
    raw_val_path: str | None = None,
    raw_test_path: str | None = None,
) -> EvalResult:
    """Score val (threshold) and test (metrics), gate, and write the report and metrics JSON.

    A Markdown summary is written next to the report (``report_html`` with ``.md``). The
    loaders default to the real ``TabularPredictor`` and clean-stage preprocessing.
    ``raw_val_path`` / ``raw_test_path``: the same rows before this run's cleaning, for the
    champion (cleaning keeps validation and test rows and their order).
    """
    import numpy as np

    from kubeloop.components.core.io import read_table
    from kubeloop.components.evaluate import metrics as M
    from kubeloop.components.evaluate.report import render_html, render_markdown
    from kubeloop.components.register.registry import load_predictor

    predictor = (predictor_loader or load_predictor)(model_dir)
    task = cast(ResolvedTask, predictor.task)
    primary = M.primary_metric(task, spec.evaluate.metric)
    mins, maxs = _check_thresholds(spec, task)  # spec errors before any scoring

    val = read_table(val_path, what="evaluate: validation frame")
    test = read_table(test_path, what="evaluate: test frame")
    classes = None if task == "regression" else list(predictor.classes)
    label = spec.data.label
    y_val, y_test = _targets(val, label, task, classes), _targets(test, label, task, classes)
    test_pred = np.asarray(predictor.predict(test))

    notes: list[str] = []
    threshold = None
    if task == "binary":
        threshold, note = M.choose_threshold(
            y_val,
            np.asarray(predictor.predict(val))[:, 1],
            spec.evaluate.threshold,
            spec.evaluate.fixed_threshold,
        )
        notes += [note] if note else []
    metrics = M.compute_metrics(
        y_test,
        test_pred,
        task,
        threshold=threshold,
        calibration_bins=spec.evaluate.calibration_bins,
        notes=notes,
    )
    slices = {
        col: M.slice_metrics(test, y_test, test_pred, col, task=task, threshold=threshold)
        for col in spec.evaluate.slice_by
    }

    passed, reasons = _bound_reasons(metrics, mins, maxs)
    hib = M.higher_is_better(primary)
    cand = metrics.get(primary)
    if cand is None:
        passed = False
        reasons.append(f"FAILED: primary metric {primary} could not be computed on the test split")
    raw_val = read_table(raw_val_path, what="evaluate: raw validation") if raw_val_path else val
    raw_test = read_table(raw_test_path, what="evaluate: raw test") if raw_test_path else test
    if (len(raw_val), len(raw_test)) != (len(val), len(test)):
        raise KubeloopError(
            "evaluate: the raw and cleaned validation/test splits differ in length "
            f"({len(raw_val)}/{len(val)}, {len(raw_test)}/{len(test)}); they must be the same rows"
        )
    champ_tag, champ_value, why_not = _champion_value(
        spec,
        task,
        classes,
        primary,
        raw_val,
        raw_test,
        y_val,
        y_test,
        predictor_loader,
        preprocess_loader,
    )
    if why_not:
        reasons.append(f"not compared with the champion: {why_not}")
    elif champ_tag is None:
        reasons.append("no champion registered yet: nothing to compare with")
    elif cand is not None and champ_value is not None:
        gain = (cand - champ_value) if hib else (champ_value - cand)
        margin = spec.evaluate.champion_margin
        beats = gain > 0 and gain >= margin
        verb = "beats" if beats else "does not beat"
        rule = f">= margin {margin}" if margin > 0 else "> 0 (margin 0: a tie does not pass)"
        sentence = (
            f"candidate {primary} {_fmt(cand)} {verb} champion {champ_tag} {_fmt(champ_value)} "
            f"by {_fmt(gain)}; needed {rule}"
        )
        if not beats:
            passed = False
            sentence = "FAILED: " + sentence
        reasons.append(sentence)

    result = EvalResult(
        task=task,
        metrics=metrics,
        primary_metric=primary,
        primary_value=float("nan") if cand is None else cand,
        higher_is_better=hib,
        threshold=threshold,
        slices=slices,
        gate=GateResult(
            passed=passed,
            reasons=reasons,
            champion_tag=champ_tag,
            champion_value=champ_value,
            candidate_value=float("nan") if cand is None else cand,
        ),
        classes=classes,
        n_val=len(val),
        n_test=len(test),
        notes=notes,
    )
    Path(metrics_json).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_json).write_text(result.model_dump_json(indent=2))
    Path(report_html).parent.mkdir(parents=True, exist_ok=True)
    Path(report_html).write_text(render_html(result, spec=spec, y_true=y_test, pred=test_pred))
    Path(report_html).with_suffix(".md").write_text(render_markdown(result, spec=spec))
    return result


def load_result(path: str) -> EvalResult:
    """Read an EvalResult written by :func:`run` (the metrics JSON output)."""
    return EvalResult.model_validate(json.loads(Path(path).read_text()))
