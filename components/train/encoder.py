"""Turns feature frames into model tensors: fitted on the training split, saved as JSON.

Numeric columns are standardized with the training mean/std; categorical columns map to
vocabulary indices where 0 means unknown or missing (so unseen values at serving time are
harmless); the label becomes class indices (classification) or a standardized float
(regression, decoded back to original units at prediction time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kubeloop.components.core.errors import DataError
from kubeloop.components.core.schema import (
    as_category_text,
    category_text,
    feature_columns,
    feature_kinds,
    resolve_task,
)
from kubeloop.components.core.spec import ResolvedTask, Spec

# Below this many rows a dict lookup per value beats pandas' vectorized machinery
# (serving predicts one or a few rows at a time).
SMALL_BATCH = 256


def _native(v: Any) -> Any:
    """JSON-safe Python scalar for a label value (numpy ints/floats/bools -> Python)."""
    return v.item() if isinstance(v, np.generic) else v


class Encoder:
    """Feature and label encoding fitted on the training frame."""

    def __init__(
        self,
        *,
        task: ResolvedTask,
        label: str,
        numeric: list[str],
        categorical: list[str],
        means: list[float],
        stds: list[float],
        vocab: dict[str, list[str]],
        classes: list[Any] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        self.task = task
        self.label = label
        self.numeric = numeric
        self.categorical = categorical
        self.means = means
        self.stds = stds
        self.vocab = vocab
        self.classes = classes or []
        self.target_mean = target_mean
        self.target_std = target_std
        self._mean = np.asarray(means, dtype=np.float32)
        self._std = np.asarray(stds, dtype=np.float32)
        self._index = {c: pd.Index(v) for c, v in vocab.items()}
        self._codes: dict[str, dict[str | None, int]] = {
            c: {t: i + 1 for i, t in enumerate(v)} for c, v in vocab.items()
        }

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, spec: Spec) -> Encoder:
        kinds = feature_kinds(df, spec)
        if not kinds:
            raise DataError("data.features: no feature columns left to train on")
        task = resolve_task(df, spec)
        numeric = [c for c in feature_columns(df, spec) if kinds[c] == "numeric"]
        categorical = [c for c in feature_columns(df, spec) if kinds[c] == "categorical"]
        num = df[numeric].astype("float64")
        means = [float(m) if math.isfinite(m) else 0.0 for m in num.mean()]
        # A constant column would divide by zero; std 1 leaves it centred at 0.
        stds = [float(s) if math.isfinite(s) and s > 0 else 1.0 for s in num.std(ddof=0)]
        vocab = {c: sorted(as_category_text(df[c]).dropna().unique().tolist()) for c in categorical}
        y = df[spec.data.label].dropna()
        common: dict[str, Any] = dict(
            task=task,
            label=spec.data.label,
            numeric=numeric,
            categorical=categorical,
            means=means,
            stds=stds,
            vocab=vocab,
        )
        if task == "regression":
            yf = y.astype("float64")
            std = float(yf.std(ddof=0))
            return cls(
                **common,
                target_mean=float(yf.mean()),
                target_std=std if math.isfinite(std) and std > 0 else 1.0,
            )
        return cls(**common, classes=[_native(v) for v in sorted(y.unique().tolist())])

    # -- transforming ----------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: the vocabulary plus index 0 for unknown/missing."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(x_num float32 [n, n_numeric], x_cat int64 [n, n_categorical])."""
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(f"input is missing feature column(s) {missing}")
        n = len(df)
        if self.numeric:
            raw = df[self.numeric].to_numpy(dtype=np.float32, na_value=np.nan)
            x_num = (raw - self._mean) / self._std
            # clean already imputed; anything still missing sits at the training mean.
            np.nan_to_num(x_num, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            x_num = np.zeros((n, 0), dtype=np.float32)
        x_cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            if n <= SMALL_BATCH:
                codes = self._codes[c]
                x_cat[:, j] = [codes.get(category_text(v), 0) for v in df[c].tolist()]
            else:
                # get_indexer gives -1 for unseen and missing values -> 0 after the shift.
                x_cat[:, j] = self._index[c].get_indexer(as_category_text(df[c])) + 1
        return np.ascontiguousarray(x_num, dtype=np.float32), x_cat

    def encode_label(self, df: pd.DataFrame, *, what: str = "data") -> np.ndarray:
        """Class indices (int64) or the standardized target (float32)."""
        if self.label not in df.columns:
            raise DataError(f"{what}: label column {self.label!r} is missing")
        y = df[self.label]
        if y.isna().any():
            raise DataError(f"{what}: label column {self.label!r} has {int(y.isna().sum())} nulls")
        if self.task == "regression":
            return ((y.to_numpy(np.float64) - self.target_mean) / self.target_std).astype(
                np.float32
            )
        idx = pd.Index(self.classes).get_indexer(y)
        if (idx < 0).any():
            unseen = sorted(map(str, pd.unique(y[idx < 0])))[:10]
            raise DataError(
                f"{what}: label {self.label!r} has value(s) {unseen} that are not in the "
                f"training classes {self.classes}"
            )
        return idx.astype(np.int64)

    def decode_regression(self, y: np.ndarray) -> np.ndarray:
        return y * self.target_std + self.target_mean

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label": self.label,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "means": self.means,
            "stds": self.stds,
            "vocab": self.vocab,
            "classes": self.classes,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Encoder:
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Encoder:
        return cls.from_dict(json.loads(Path(path).read_text()))
