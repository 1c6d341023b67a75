"""The one rule that turns class probabilities into a class: evaluation, serving and batch
scoring all call it, so the served decision is the one the gate measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeloop.components.core.spec import ResolvedTask

if TYPE_CHECKING:
    import numpy as np

DEFAULT_THRESHOLD = 0.5


def predict_classes(proba: np.ndarray, task: ResolvedTask, threshold: float | None) -> np.ndarray:
    """Class indices: binary by the decision threshold on the positive class, else argmax."""
    import numpy as np

    if task == "binary":
        cut = DEFAULT_THRESHOLD if threshold is None else threshold
        return (proba[:, 1] >= cut).astype(np.int64)
    return np.asarray(proba.argmax(axis=1), dtype=np.int64)
