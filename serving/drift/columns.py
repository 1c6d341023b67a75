"""How each reference column is compared with live windows: a plan built once per
(reference, window size), shared by the live check and the calibration.

Every column is reduced to counts over fixed bins taken from the reference, so one check is
a ``searchsorted`` + ``bincount`` per column, and a bootstrap draw of rows is one gather +
``bincount`` per column (the calibration's cost is linear in rows × columns × draws):

* numeric: bins at the reference's 0.5 % quantiles (at most 200; fewer for discrete
  columns), plus a last bin for missing / non-finite values. The KS distance D is the
  largest gap between the two empirical CDFs at those bin edges; with 200 quantile edges it
  is the exact D up to the gap's variation within 0.5 % of the reference mass, and the
  calibration measures this very statistic, so no accuracy is lost to the threshold. PSI
  uses the reference deciles (as ``core.stats`` does); values outside the reference range
  count in the outer bins. The Wasserstein-1 distance (reported, in the column's units) is
  ``scipy.stats.wasserstein_distance`` on the finite values.
* categorical: bins = the reference categories whose expected count in a window of the
  configured size is at least ``min_expected`` (5, the usual rule for chi-square), plus one
  ``__other__`` bin that pools the rarer ones and every category the reference never had.
  With fewer than two non-empty reference bins (a constant column) chi-square is undefined
  and the test falls back to the Jensen–Shannon distance with a calibrated threshold.
  Missing values are the category ``__missing__`` (as clean imputes them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from kubeloop.components.core.schema import as_category_text
from kubeloop.components.core.stats import DECILES, OTHER
from kubeloop.serving.drift.stattests import ks_p_value

if TYPE_CHECKING:
    import pandas as pd

ColumnKind = Literal["numeric", "categorical"]
TestName = Literal["ks", "chi-square", "jensen-shannon"]
MISSING = "__missing__"
KS_QUANTILES = np.linspace(0.0, 1.0, 201)  # 0.5 % steps


def as_float_array(column: pd.Series) -> np.ndarray:
    """A column as float64 (text and None -> NaN); ±inf kept (callers treat it as missing)."""
    import pandas as pd

    if column.dtype.kind == "f":
        return column.to_numpy(dtype=float)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def category_values(column: pd.Series) -> pd.Series:
    """A column as category text, missing values as ``__missing__``."""
    import pandas as pd

    if pd.api.types.infer_dtype(column, skipna=False) == "string":
        return column
    return as_category_text(column).fillna(MISSING)


def draw_counts(codes: np.ndarray, draws: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts per bin of bootstrap windows given as reference row indices (draws × rows)."""
    offsets = n_bins * np.arange(draws.shape[0], dtype=np.int64)[:, None]
    flat = (codes[draws] + offsets).ravel()
    return np.bincount(flat, minlength=n_bins * draws.shape[0]).reshape(-1, n_bins)


@dataclass(frozen=True)
class NumericPlan:
    name: str
    codes: np.ndarray  # KS bin per reference row; the last bin = missing
    inner_edges: np.ndarray  # KS bin edges without the outer two
    reference_counts: np.ndarray  # reference rows per KS bin (missing last)
    sorted_values: np.ndarray  # finite reference values, sorted (Wasserstein)
    psi_edges: np.ndarray  # inner decile edges
    reference_psi: np.ndarray  # reference rows per PSI bin
    kind: ColumnKind = "numeric"
    test: TestName = "ks"

    @classmethod
    def build(cls, name: str, column: pd.Series) -> NumericPlan | None:
        v = as_float_array(column)
        finite = np.isfinite(v)
        values = np.sort(v[finite])
        if values.size == 0:
            return None
        inner = np.unique(np.quantile(values, KS_QUANTILES))[1:-1]
        codes = np.where(finite, np.searchsorted(inner, np.where(finite, v, 0.0), "right"), -1)
        codes[codes < 0] = len(inner) + 1
        psi_edges = np.unique(np.quantile(values, DECILES))[1:-1]
        return cls(
            name=name,
            codes=codes.astype(np.int64),
            inner_edges=inner,
            reference_counts=np.bincount(codes, minlength=len(inner) + 2),
            sorted_values=values,
            psi_edges=psi_edges,
            reference_psi=np.bincount(
                np.searchsorted(psi_edges, values, "right"), minlength=len(psi_edges) + 1
            ),
        )

    @property
    def n_bins(self) -> int:
        return len(self.inner_edges) + 2

    def window_counts(self, values: np.ndarray) -> np.ndarray:
        """Counts per KS bin of a window's values (non-finite -> the missing bin)."""
        finite = np.isfinite(values)
        counts = np.bincount(
            np.searchsorted(self.inner_edges, values[finite], "right"), minlength=self.n_bins
        )
        counts[-1] += int((~finite).sum())
        return counts

    def psi_counts(self, finite_values: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.psi_edges, finite_values, "right")
        return np.bincount(idx, minlength=len(self.psi_edges) + 1)

    def ks(self, counts_w: np.ndarray, counts_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(D, p-value) from KS-bin counts, vectorized over leading axes. Missing values are
        left out; a side with no finite value gives D = 0, p = 1."""
        cum_w = np.cumsum(counts_w[..., :-2], axis=-1, dtype=np.float64)
        cum_r = np.cumsum(counts_r[..., :-2], axis=-1, dtype=np.float64)
        n_w = counts_w[..., :-1].sum(axis=-1, dtype=np.float64)
        n_r = counts_r[..., :-1].sum(axis=-1, dtype=np.float64)
        ok = (n_w > 0) & (n_r > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.abs(cum_w / n_w[..., None] - cum_r / n_r[..., None])
        d = np.where(ok, np.nan_to_num(gap).max(axis=-1, initial=0.0), 0.0)
        return d, np.where(ok, ks_p_value(d, n_w, n_r), 1.0)


@dataclass(frozen=True)
class CategoricalPlan:
    name: str
    bins: tuple[str, ...]  # kept categories, then OTHER
    codes: np.ndarray  # bin per reference row
    reference_counts: np.ndarray
    test: TestName
    kind: ColumnKind = "categorical"

    @classmethod
    def build(
        cls, name: str, column: pd.Series, window: int, min_expected: float
    ) -> CategoricalPlan:
        text = category_values(column)
        shares = text.value_counts(normalize=True)
        kept = tuple(str(c) for c, s in shares.items() if s * window >= min_expected and c != OTHER)
        index = {c: i for i, c in enumerate(kept)}
        codes = text.map(index).fillna(len(kept)).to_numpy(dtype=np.int64)
        ref = np.bincount(codes, minlength=len(kept) + 1)
        test: TestName = "chi-square" if (ref > 0).sum() >= 2 else "jensen-shannon"
        return cls(name, (*kept, OTHER), codes, ref, test)

    @property
    def n_bins(self) -> int:
        return len(self.bins)

    def window_counts(self, column: pd.Series) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.bins[:-1])}
        other = self.n_bins - 1
        counts = np.zeros(self.n_bins, dtype=np.int64)
        for value, n in category_values(column).value_counts().items():
            counts[index.get(str(value), other)] += int(n)
        return counts


Plan = NumericPlan | CategoricalPlan


def build_plans(
    reference: pd.DataFrame, kinds: Mapping[str, ColumnKind], window: int, min_expected: float
) -> list[Plan]:
    """One plan per column of `kinds` (a numeric column with no finite reference value has
    nothing to compare with and is left out)."""
    plans: list[Plan] = []
    for name, kind in kinds.items():
        if kind == "numeric":
            numeric = NumericPlan.build(name, reference[name])
            if numeric is not None:
                plans.append(numeric)
        else:
            plans.append(CategoricalPlan.build(name, reference[name], window, min_expected))
    return plans
