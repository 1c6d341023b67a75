"""Two-sample statistics of a live window against the reference sample, and their p-values.

The functions take counts over fixed bins (see ``columns``) and are vectorized over leading
axes, so the live check (one window) and the calibration (thousands of bootstrap windows)
compute the same number the same way.

* KS: the asymptotic Kolmogorov p-value ``scipy.special.kolmogorov(sqrt(n·m/(n+m))·D)`` (the
  survival function of ``scipy.stats.kstwobign``, without the distribution-object overhead:
  ~0.4 µs instead of ~150 µs per call). ``scipy.stats.ks_2samp``'s default evaluates the
  exact finite-n law ``kstwo``, ~0.5 ms per value: too slow for thousands of draws.
* chi-square: Pearson's statistic of the 2×K table (window counts, reference counts) over the
  bins that have any count, p from ``scipy.special.chdtrc`` (the chi2 survival function).
  ``scipy.stats.chi2_contingency`` computes the same for one table (~0.8 ms a call); this
  form does all bootstrap tables at once, and tests check the two agree.
* Jensen–Shannon distance (``scipy.spatial.distance.jensenshannon``, base 2), PSI with bands.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special
from scipy.spatial.distance import jensenshannon

PsiBand = Literal["stable", "moderate", "significant"]
# Floor for empty bins in PSI (log of zero otherwise); the common choice in PSI tooling.
PSI_EPSILON = 1e-4
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2


def psi(window_counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """Population stability index of two binned distributions (counts over the same bins)."""
    w = np.asarray(window_counts, dtype=float)
    r = np.asarray(reference_counts, dtype=float)
    if w.sum() == 0 or r.sum() == 0:
        return 0.0
    a = np.clip(w / w.sum(), PSI_EPSILON, None)
    e = np.clip(r / r.sum(), PSI_EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_band(value: float) -> PsiBand:
    """< 0.1 stable, 0.1–0.2 moderate, > 0.2 significant."""
    if value < PSI_MODERATE:
        return "stable"
    return "moderate" if value <= PSI_SIGNIFICANT else "significant"


def ks_p_value(
    d: np.ndarray | float, n_window: np.ndarray | float, n_reference: np.ndarray | float
) -> np.ndarray:
    """Asymptotic two-sided Kolmogorov p-value of a two-sample D (vectorized)."""
    nw = np.asarray(n_window, dtype=float)
    nr = np.asarray(n_reference, dtype=float)
    en = nw * nr / np.maximum(nw + nr, 1.0)
    return np.asarray(special.kolmogorov(np.sqrt(en) * np.asarray(d, dtype=float)))


def chi_square(
    window_counts: np.ndarray, reference_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson chi-square of 2×K tables, vectorized over leading axes: (statistic, dof).

    Bins empty in both rows are left out (their expected count is zero), so dof is the number
    of non-empty bins minus one; a table with fewer than two such bins has statistic 0, dof 0.
    """
    w = np.asarray(window_counts, dtype=float)
    r = np.broadcast_to(np.asarray(reference_counts, dtype=float), w.shape)
    total_w = w.sum(axis=-1, keepdims=True)
    total_r = r.sum(axis=-1, keepdims=True)
    col = w + r
    grand = total_w + total_r
    with np.errstate(divide="ignore", invalid="ignore"):
        ew = total_w * col / grand
        er = total_r * col / grand
        terms = np.where(col > 0, (w - ew) ** 2 / ew + (r - er) ** 2 / er, 0.0)
    dof = np.maximum((col > 0).sum(axis=-1) - 1, 0)
    statistic = np.where(dof > 0, np.nan_to_num(terms.sum(axis=-1)), 0.0)
    return statistic, dof


def chi_square_p_value(statistic: np.ndarray | float, dof: np.ndarray | int) -> np.ndarray:
    """Upper tail of chi-square(dof); 1.0 where dof is 0 (nothing to compare)."""
    dof_arr = np.asarray(dof)
    p = special.chdtrc(np.maximum(dof_arr, 1), statistic)
    return np.asarray(np.where(dof_arr > 0, p, 1.0))


def js_distance(window_counts: np.ndarray, reference_counts: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) over the last axis; 0 for an empty window."""
    w = np.asarray(window_counts, dtype=float)
    r = np.broadcast_to(np.asarray(reference_counts, dtype=float), w.shape)
    empty = w.sum(axis=-1) == 0
    safe = np.where(empty[..., None], r, w)
    return np.where(empty, 0.0, jensenshannon(safe, r, base=2, axis=-1))
