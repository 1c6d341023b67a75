"""The statistics agree with scipy's reference implementations and with each other."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kubeloop.serving.drift.calibration import calibrate
from kubeloop.serving.drift.columns import NumericPlan, build_plans, draw_counts
from kubeloop.serving.drift.stattests import (
    chi_square,
    chi_square_p_value,
    js_distance,
    ks_p_value,
    psi,
    psi_band,
)


def test_chi_square_matches_chi2_contingency_and_skips_empty_bins() -> None:
    w = np.array([30, 50, 0, 20])
    r = np.array([300, 400, 0, 300])
    stat, dof = chi_square(w, r)
    ref = stats.chi2_contingency(np.vstack([w, r])[:, [0, 1, 3]], correction=False)
    assert float(stat) == pytest.approx(ref.statistic) and int(dof) == ref.dof == 2
    assert float(chi_square_p_value(stat, dof)) == pytest.approx(ref.pvalue)
    # vectorized over draws: one row per table
    many = np.vstack([w, w[::-1]])
    stats_many, _ = chi_square(many, r)
    assert stats_many[0] == pytest.approx(ref.statistic)
    assert float(chi_square_p_value(*chi_square(np.array([5, 0]), np.array([5, 0])))) == 1.0


def test_ks_on_quantile_bins_is_close_to_the_exact_statistic() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    plan = NumericPlan.build("x", pd.Series(ref))
    assert plan is not None and len(plan.inner_edges) == 199
    for shift in (0.0, 0.1, 0.25):
        live = rng.normal(size=1000) + shift
        d, p = plan.ks(plan.window_counts(live), plan.reference_counts)
        exact = stats.ks_2samp(live, ref)
        assert float(d) <= exact.statistic + 1e-12
        assert float(d) == pytest.approx(exact.statistic, abs=0.006)
        en = 1000 * 5000 / 6000
        assert float(p) == pytest.approx(stats.kstwobign.sf(np.sqrt(en) * float(d)))


def test_ks_ignores_missing_values_and_counts_them_apart() -> None:
    plan = NumericPlan.build("x", pd.Series([1.0, 2.0, np.nan, 3.0]))
    assert plan is not None
    counts = plan.window_counts(np.array([1.0, np.inf, np.nan, 2.0]))
    assert counts[-1] == 2 and counts[:-1].sum() == 2
    assert plan.reference_counts[-1] == 1


def test_ks_p_value_is_the_asymptotic_kolmogorov_tail() -> None:
    assert float(ks_p_value(0.05, 1000, 5000)) == pytest.approx(
        stats.kstwobign.sf(0.05 * np.sqrt(1000 * 5000 / 6000))
    )


def test_js_distance_matches_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    w, r = np.array([10, 0, 5]), np.array([3, 3, 3])
    assert float(js_distance(w, r)) == pytest.approx(jensenshannon(w, r, base=2))
    assert float(js_distance(np.zeros(3), r)) == 0.0


def test_psi_and_bands() -> None:
    assert psi(np.array([10, 10]), np.array([50, 50])) == pytest.approx(0.0)
    a, e = np.array([0.6, 0.4]), np.array([0.5, 0.5])
    assert psi(a * 100, e * 100) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert [psi_band(v) for v in (0.05, 0.1, 0.2, 0.21)] == [
        "stable",
        "moderate",
        "moderate",
        "significant",
    ]


def test_bootstrap_counts_are_the_counts_of_the_drawn_rows() -> None:
    codes = np.array([0, 1, 1, 2])
    draws = np.array([[0, 0, 3], [1, 2, 2]])
    assert draw_counts(codes, draws, 3).tolist() == [[2, 0, 1], [0, 3, 0]]


def test_calibrated_threshold_is_an_order_statistic_between_bonferroni_and_alpha() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(5)})
    plans = build_plans(ref, dict.fromkeys(ref.columns, "numeric"), 400, 5.0)
    cal = calibrate(plans, n_reference=2000, window=400, false_alarm_rate=0.05, draws=999, seed=3)
    # independent columns: min-P is close to Šidák's 1-(1-α)^(1/m), a bit above α/m
    sidak = 1 - (1 - 0.05) ** (1 / 5)
    assert cal.bonferroni_threshold == pytest.approx(0.01)
    assert 0.5 * sidak < cal.p_threshold < 2 * sidak
    again = calibrate(plans, n_reference=2000, window=400, false_alarm_rate=0.05, draws=999, seed=3)
    assert again.p_threshold == cal.p_threshold
