"""Register stage: reference statistics from the train frame, then the BentoML model store."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pandas as pd

    from kubeloop.components.core.spec import ResolvedTask, Spec
    from kubeloop.components.register.registry import Predictor, PredictorLoader

log = logging.getLogger(__name__)


def run(
    spec: Spec,
    model_dir: str,
    clean_params_path: str,
    eval_json: str,
    train_path: str,
    data_fingerprint: str,
    run_id: str,
    report_html: str | None = None,
    *,
    audit: dict[str, Any] | None = None,
    predictor_loader: PredictorLoader | None = None,
) -> str | None:
    """The registered tag, or None (nothing registered) when the evaluation gate failed.

    `audit`: counts of what ingest and clean changed (see :func:`load_audit`); the model
    card lists them as known data issues. `predictor_loader` loads the trained model to
    predict the reference sample (default: the real ``TabularPredictor`` loader)."""
    from kubeloop.components.core.io import read_table
    from kubeloop.components.core.schema import feature_kinds
    from kubeloop.components.core.stats import label_stats, reference_stats
    from kubeloop.components.evaluate.task import load_result
    from kubeloop.components.register import registry

    result = load_result(eval_json)
    if not result.gate.passed:
        log.warning(
            "gate failed, not registering %s: %s", spec.name, "; ".join(result.gate.reasons)
        )
        return None
    train = read_table(train_path, what="register: train frame")
    kinds = feature_kinds(train, spec)
    stats = reference_stats(train, kinds)
    if spec.data.label in train.columns:
        stats["label"] = label_stats(train[spec.data.label], result.task)
    sample = predicted_reference_sample(
        train,
        list(kinds),
        (predictor_loader or registry.load_predictor)(model_dir),
        result.task,
        result.threshold,
        seed=spec.train.seed,
    )
    return registry.register(
        spec,
        model_dir=model_dir,
        clean_params_path=clean_params_path,
        eval_result=result,
        data_fingerprint=data_fingerprint,
        run_id=run_id,
        reference_stats=stats,
        reference_sample=sample,
        report_html=report_html,
        data_summary={
            "rows": {"train": len(train), "validation": result.n_val, "test": result.n_test},
            "audit": audit or {},
        },
    )


def predicted_reference_sample(
    train: pd.DataFrame,
    features: list[str],
    predictor: Predictor,
    task: str,
    threshold: float | None,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """A seeded sample of the (cleaned) train rows' features plus the model's predictions on
    them, in the form live traffic reaches drift checks: the class as ``str(label)`` (what the
    served ``Prediction.prediction`` prints as) and P(positive class) for binary models, or the
    value for regression."""
    import numpy as np

    from kubeloop.components.core.decision import predict_classes
    from kubeloop.components.core.stats import PREDICTION_COLUMN, SCORE_COLUMN, reference_sample

    sample = reference_sample(train, features, seed=seed)
    out = np.asarray(predictor.predict(sample[list(predictor.features)]), dtype=float)
    if task == "regression":
        sample[PREDICTION_COLUMN] = out.reshape(-1)
        return sample
    resolved = cast("ResolvedTask", task)
    picked = predict_classes(out, resolved, threshold if task == "binary" else None)
    classes = [str(c) for c in predictor.classes]
    sample[PREDICTION_COLUMN] = [classes[k] for k in picked.tolist()]
    if task == "binary":
        sample[SCORE_COLUMN] = out[:, 1]
    return sample


def load_audit(ingest_audit: str | None, clean_audit: str | None) -> dict[str, int]:
    """Flatten the ingest and clean audit files into ``{"stage[ split]: rule": count}``."""
    import json
    from pathlib import Path

    flat: dict[str, int] = {}
    for stage, path in (("ingest", ingest_audit), ("clean", clean_audit)):
        if not path or not Path(path).is_file():
            continue
        for key, value in json.loads(Path(path).read_text()).items():
            if isinstance(value, dict):  # clean: per split
                flat.update({f"{stage} {key}: {k}": int(v) for k, v in value.items()})
            elif key not in ("rows_in", "rows_out") and isinstance(value, int | float):
                flat[f"{stage}: {key}"] = int(value)
    return flat
