"""DriftDetector on synthetic data: calibrated false alarms, power, insufficient data,
prediction drift, categorical bins, settings errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kubeloop.components.core.errors import KubeloopError, SpecError
from kubeloop.components.core.spec import MonitorSpec, parse_spec
from kubeloop.components.core.stats import PREDICTION_COLUMN, SCORE_COLUMN
from kubeloop.serving.drift import DriftDetector, DriftSettings
from kubeloop.serving.drift.columns import CategoricalPlan, build_plans
from kubeloop.serving.schemas import Prediction
from tests.serving.drift import synthetic

N_NUM, N_CAT = 6, 2
KINDS: Any = synthetic.kinds(N_NUM, N_CAT)


def detector(seed: int = 0, **settings: Any) -> DriftDetector:
    reference = synthetic.frame(3000, np.random.default_rng(seed), numeric=N_NUM, categorical=N_CAT)
    opts = {"window": 500, "min_rows": 100, "draws": 1000, **settings}
    return DriftDetector(reference, KINDS, settings=DriftSettings(**opts))


def window(rng: np.random.Generator, n: int = 500, **shift: Any) -> pd.DataFrame:
    return synthetic.frame(n, rng, numeric=N_NUM, categorical=N_CAT, **shift)


def test_stationary_windows_alarm_at_the_calibrated_rate() -> None:
    # A 5 % target makes the count informative both ways: a detector that never alarms
    # fails the lower bound, one that ignores the calibration fails the upper one.
    rate, n_windows = 0.05, 300
    det = detector(false_alarm_rate=rate)
    rng = np.random.default_rng(100)
    alarms = sum(det.check_frame(window(rng)).drifted for _ in range(n_windows))
    low, high = stats.binom.ppf([0.0005, 0.9995], n_windows, rate)
    assert low <= alarms <= high, f"{alarms} alarms in {n_windows} stationary windows"


def test_stationary_windows_at_one_percent_stay_within_the_binomial_bound() -> None:
    det = detector()
    rng = np.random.default_rng(7)
    alarms = sum(det.check_frame(window(rng)).drifted for _ in range(200))
    assert alarms <= stats.binom.ppf(0.999, 200, 0.01)


def test_half_sigma_mean_shift_is_detected_in_that_feature_only() -> None:
    det = detector()
    rng = np.random.default_rng(1)
    for _ in range(5):
        report = det.check_frame(window(rng, mean_shift=0.5))
        assert report.drifted and report.status == "drift"
        x0 = next(c for c in report.features if c.column == "x0")
        assert x0.drifted and x0.test == "ks" and x0.p_value is not None
        assert x0.p_value < x0.threshold == report.p_threshold
        assert x0.distance == pytest.approx(0.5, abs=0.15)  # Wasserstein-1 of a 0.5 shift
        assert x0.psi > 0.1 and x0.psi_band in ("moderate", "significant")


def test_category_frequency_shift_is_detected() -> None:
    det = detector()
    rng = np.random.default_rng(2)
    for _ in range(5):
        # 'a' 50 % -> 35 %, 'd' 5 % -> 15 %: a new customer segment arriving
        shifted = rng.choice(synthetic.CATEGORIES, size=500, p=[0.35, 0.3, 0.2, 0.15])
        report = det.check_frame(window(rng).assign(c0=shifted))
        c0 = next(c for c in report.features if c.column == "c0")
        assert c0.test == "chi-square" and c0.distance > 0  # JS distance reported
        assert c0.drifted and report.drifted
        assert report.drifted_columns == ["c0"]


def test_report_lists_every_column_with_psi_bands() -> None:
    report = detector().check_frame(window(np.random.default_rng(3)))
    assert [c.column for c in report.features] == list(KINDS)
    for c in report.features:
        assert c.psi_band == (
            "stable" if c.psi < 0.1 else "moderate" if c.psi <= 0.2 else "significant"
        )
    assert report.n_rows == 500 and report.window == 500 and report.correction == "minp"
    assert report.prediction == [] and report.prediction_psi is None


def test_insufficient_data_below_min_rows() -> None:
    det = detector()
    rng = np.random.default_rng(4)
    small = window(rng, n=99, mean_shift=3.0)  # a huge shift, but too few rows to say
    report = det.check_frame(small)
    assert report.status == "insufficient-data" and not report.drifted
    assert report.features == [] and report.p_threshold is None and "99 rows" in report.message
    assert det.check(small.to_dict("records")).status == "insufficient-data"
    assert det.check_frame(window(rng, n=100, mean_shift=3.0)).status == "drift"


def binary_reference(n: int, rng: np.random.Generator) -> pd.DataFrame:
    df = synthetic.frame(n, rng, numeric=2, categorical=1)
    score = 1 / (1 + np.exp(-2 * df["x0"].to_numpy()))
    return df.assign(
        **{SCORE_COLUMN: score, PREDICTION_COLUMN: np.where(score >= 0.5, "yes", "no")}
    )


def served(df: pd.DataFrame, constant: bool = False) -> list[Prediction]:
    score = np.zeros(len(df)) if constant else 1 / (1 + np.exp(-2 * df["x0"].to_numpy()))
    return [
        Prediction(
            prediction="yes" if s >= 0.5 else "no",
            probabilities={"no": 1 - s, "yes": s},
            model="m:1",
            threshold=0.5,
        )
        for s in score
    ]


def test_prediction_drift_is_detected_for_a_constant_predictor() -> None:
    rng = np.random.default_rng(5)
    det = DriftDetector(
        binary_reference(3000, rng),
        synthetic.kinds(2, 1),
        task="binary",
        positive_class="yes",
        settings=DriftSettings(window=500, min_rows=100, draws=1000),
    )
    live = synthetic.frame(500, rng, numeric=2, categorical=1)
    rows = live.to_dict("records")

    healthy = det.check(rows, served(live))
    assert [c.column for c in healthy.prediction] == [PREDICTION_COLUMN, SCORE_COLUMN]
    assert not healthy.drifted and healthy.prediction_psi is not None

    broken = det.check(rows, served(live, constant=True))
    assert broken.drifted and broken.prediction_drifted
    assert {c.column for c in broken.prediction if c.drifted} == {PREDICTION_COLUMN, SCORE_COLUMN}
    assert not any(c.drifted for c in broken.features)  # the inputs did not move
    assert broken.prediction_psi is not None and broken.prediction_psi > 0.2


def test_calibration_is_seeded_and_cached() -> None:
    a, b = detector(), detector()
    assert a.calibrate() is b.calibrate()  # same reference + settings: computed once
    assert a.calibrate().tested == N_NUM + N_CAT
    other = detector(seed=0, draws=1001)
    assert other.calibrate() is not a.calibrate()
    assert other.calibrate().p_threshold == pytest.approx(a.calibrate().p_threshold, rel=0.5)


def test_bonferroni_correction_uses_alpha_over_tests() -> None:
    det = detector(correction="bonferroni")
    assert det.p_threshold == pytest.approx(0.01 / (N_NUM + N_CAT))


def test_rare_categories_are_pooled_and_unseen_ones_land_in_other() -> None:
    ref = pd.DataFrame({"c": ["a"] * 600 + ["b"] * 396 + ["r1", "r2", "r3", "r4"]})
    (plan,) = build_plans(ref, {"c": "categorical"}, window=500, min_expected=5.0)
    assert isinstance(plan, CategoricalPlan)
    assert plan.bins == ("a", "b", "__other__") and plan.test == "chi-square"
    assert plan.reference_counts.tolist() == [600, 396, 4]
    counts = plan.window_counts(pd.Series(["a", "b", "new", None, "r2"]))
    assert counts.tolist() == [1, 1, 3]  # unseen, missing and rare pooled


def test_constant_reference_column_falls_back_to_jensen_shannon() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(size=1000), "c": ["only"] * 1000})
    det = DriftDetector(
        ref,
        {"x": "numeric", "c": "categorical"},
        settings=DriftSettings(window=200, min_rows=50, draws=500),
    )
    same = pd.DataFrame({"x": rng.normal(size=200), "c": ["only"] * 200})
    c = next(col for col in det.check_frame(same).features if col.column == "c")
    assert c.test == "jensen-shannon" and c.p_value is None and not c.drifted
    changed = same.assign(c=["only"] * 180 + ["new"] * 20)
    c = next(col for col in det.check_frame(changed).features if col.column == "c")
    assert c.drifted and c.statistic > c.threshold


def test_raw_rows_are_preprocessed_before_the_comparison() -> None:
    rng = np.random.default_rng(8)
    ref = synthetic.frame(2000, rng, numeric=1, categorical=0)
    settings = DriftSettings(window=300, min_rows=100, draws=500)
    calls: list[int] = []

    def impute(df: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(df))
        return df.fillna({"x0": 0.0})

    det = DriftDetector(ref, {"x0": "numeric"}, settings=settings, preprocess=impute)
    rows: list[dict[str, Any]] = [{"x0": v} for v in rng.normal(size=300)]
    rows[:5] = [{"x0": None}] * 5
    report = det.check(rows)
    assert calls == [300] and report.features[0].n == 300  # imputed: every value compared


def test_settings_errors_name_the_spec_field() -> None:
    def spec(**monitor: Any) -> Any:
        return parse_spec(
            {"name": "p", "data": {"source": "d.csv", "label": "y"}, "monitor": monitor}
        )

    # The spec refuses what a drift check cannot use, when it is loaded.
    with pytest.raises(SpecError, match=r"monitor\.drift_window: .*greater than or equal to 200"):
        spec(drift_window=100)
    with pytest.raises(SpecError, match=r"monitor\.false_alarm_rate"):
        spec(false_alarm_rate=0.0)
    monitor = spec(drift_window=300).monitor
    with pytest.raises(SpecError, match=r"min_rows .* must not exceed window"):
        DriftSettings.from_monitor(monitor, min_rows=400)
    with pytest.raises(SpecError, match=r"monitor\.false_alarm_rate"):
        DriftSettings.from_monitor(monitor, false_alarm_rate=0.6)
    with pytest.raises(ValueError, match="raise draws"):
        DriftSettings(false_alarm_rate=0.001, draws=500)
    ok = DriftSettings.from_monitor(MonitorSpec(drift_window=400, false_alarm_rate=0.02))
    assert (ok.window, ok.false_alarm_rate, ok.min_rows) == (400, 0.02, 200)


def test_reference_without_a_feature_column_is_refused() -> None:
    with pytest.raises(KubeloopError, match=r"\['missing'\] not in the reference sample"):
        DriftDetector(pd.DataFrame({"x": [1.0, 2.0]}), {"x": "numeric", "missing": "numeric"})
