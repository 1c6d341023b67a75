"""Thresholds calibrated on the reference sample for one window size, by bootstrap.

Null model: a stationary live window of n rows and the reference of N rows are two
independent samples of one distribution. Each bootstrap draw mimics that with the reference
sample as the stand-in distribution: a window of n rows AND a reference of N rows, both drawn
with replacement from the reference sample (redrawing the reference too matters: a window
compared with the very sample it came from looks too similar, and thresholds set that way
alarm too often). Rows are drawn whole, so the draws keep the features' dependence.

Multiple testing: single-step min-P (Westfall & Young). For each draw the smallest p-value
over all tested columns (features and predictions) is kept; the threshold is the
⌊α·(B+1)⌋-th smallest of those B minima, and a live column is flagged when its p-value is
strictly below it. So the probability that a stationary window flags anything — the
false-alarm rate per check — is at most α, whatever the dependence between columns and
however far the asymptotic p-values are from exact (ties, sparse categories), because both
sides of the comparison went through the same formulas. It is the resampling form of
Bonferroni: Bonferroni's α/m assumes the worst case and loses power when columns are
correlated or their p-values conservative; min-P measures the actual joint behaviour. Holm's
step-down would flag more columns only after a first one is flagged, so it would not change
whether a window alarms. Bonferroni's α/m is kept in the result for comparison.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kubeloop.serving.drift.columns import CategoricalPlan, NumericPlan, Plan, draw_counts
from kubeloop.serving.drift.stattests import chi_square, chi_square_p_value, js_distance

# Rows × draws per chunk of the bootstrap (bounds memory at a few tens of MB).
CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class Calibration:
    window: int
    reference_rows: int
    draws: int
    seed: int
    false_alarm_rate: float
    p_threshold: float  # min-P threshold for KS / chi-square p-values
    bonferroni_threshold: float  # α / number of p-value tests, for comparison
    tested: int  # columns with a p-value test
    js_thresholds: dict[str, float] = field(default_factory=dict)  # jensen-shannon columns
    seconds: float = 0.0


def calibrate(
    plans: Sequence[Plan],
    *,
    n_reference: int,
    window: int,
    false_alarm_rate: float,
    draws: int,
    seed: int,
) -> Calibration:
    """Bootstrap the null distribution of the smallest p-value for windows of `window` rows."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    tested = [p for p in plans if p.test != "jensen-shannon"]
    js_plans = [p for p in plans if isinstance(p, CategoricalPlan) and p.test == "jensen-shannon"]
    min_p = np.ones(draws)
    js_max = dict.fromkeys((p.name for p in js_plans), 0.0)
    chunk = max(1, CHUNK_CELLS // (n_reference + window))
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        idx_w = rng.integers(0, n_reference, size=(size, window))
        idx_r = rng.integers(0, n_reference, size=(size, n_reference))
        low = min_p[start : start + size]
        for plan in tested:
            counts_w = draw_counts(plan.codes, idx_w, plan.n_bins)
            counts_r = draw_counts(plan.codes, idx_r, plan.n_bins)
            if isinstance(plan, NumericPlan):
                p = plan.ks(counts_w, counts_r)[1]
            else:
                p = chi_square_p_value(*chi_square(counts_w, counts_r))
            np.minimum(low, p, out=low)
        for js_plan in js_plans:
            counts_w = draw_counts(js_plan.codes, idx_w, js_plan.n_bins)
            counts_r = draw_counts(js_plan.codes, idx_r, js_plan.n_bins)
            js = js_distance(counts_w, counts_r)
            js_max[js_plan.name] = max(js_max[js_plan.name], float(js.max()))
    k = math.floor(false_alarm_rate * (draws + 1))
    if k < 1:
        raise ValueError(f"{draws} draws cannot calibrate a false-alarm rate of {false_alarm_rate}")
    threshold = float(np.sort(min_p)[k - 1]) if tested else 0.0
    return Calibration(
        window=window,
        reference_rows=n_reference,
        draws=draws,
        seed=seed,
        false_alarm_rate=false_alarm_rate,
        p_threshold=threshold,
        bonferroni_threshold=false_alarm_rate / max(len(tested), 1),
        tested=len(tested),
        # The largest JS distance any stationary draw reached: a live window beyond it is
        # further from the reference than the null ever went.
        js_thresholds=js_max,
        seconds=time.perf_counter() - started,
    )
