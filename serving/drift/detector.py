"""Drift of one window of live rows (and the model's predictions on them) against a model's
reference sample.

Per column the test follows its type: numeric -> Kolmogorov–Smirnov (Wasserstein-1 distance
reported), categorical -> chi-square over bins with enough expected rows (Jensen–Shannon
distance reported; the test itself for a constant reference column); PSI with its bands for
every column. Predictions are columns too: the predicted class (chi-square), P(positive) of
binary models and the value of regression models (KS). The p-value threshold is calibrated
on the reference for the configured window size (see ``calibration``), so a stationary
window alarms with probability at most ``false_alarm_rate``. Windows with fewer than
``min_rows`` rows get ``insufficient-data``, never a verdict.

A window still filling up (``min_rows`` <= n < ``window``) is tested against the same
threshold: each p-value carries its own sample size, and the threshold is a p-value.
Calibration runs once per (reference, settings) in a process and is cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kubeloop.components.core.errors import KubeloopError, SpecError
from kubeloop.components.core.spec import MIN_DRIFT_ROWS
from kubeloop.components.core.stats import PREDICTION_COLUMN, SCORE_COLUMN
from kubeloop.serving.drift.calibration import Calibration, calibrate
from kubeloop.serving.drift.columns import (
    CategoricalPlan,
    ColumnKind,
    NumericPlan,
    Plan,
    TestName,
    as_float_array,
    build_plans,
)
from kubeloop.serving.drift.stattests import (
    PsiBand,
    chi_square,
    chi_square_p_value,
    js_distance,
    psi,
    psi_band,
)

if TYPE_CHECKING:
    import pandas as pd

    from kubeloop.components.core.spec import MonitorSpec
    from kubeloop.components.register.registry import RegisteredModel

Status = Literal["ok", "drift", "insufficient-data"]
Correction = Literal["minp", "bonferroni"]
DEFAULT_MIN_ROWS = MIN_DRIFT_ROWS


class DriftSettings(BaseModel):
    """How drift is checked (``spec.monitor`` supplies window and false-alarm rate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(default=1000, ge=2, description="Rows per window (per variant).")
    min_rows: int = Field(
        default=DEFAULT_MIN_ROWS, ge=2, description="Below this many rows: insufficient-data."
    )
    false_alarm_rate: float = Field(
        default=0.01, gt=0, lt=0.5, description="Probability that a stationary window alarms."
    )
    draws: int = Field(default=2000, ge=100, description="Bootstrap draws for the calibration.")
    seed: int = 0
    min_expected: float = Field(
        default=5.0, gt=0, description="Categories expected fewer times per window are pooled."
    )
    correction: Correction = Field(
        default="minp",
        description="minp: calibrated min-P threshold; bonferroni: α / tests, uncalibrated.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_rows > self.window:
            raise ValueError(f"min_rows ({self.min_rows}) must not exceed window ({self.window})")
        if self.draws * self.false_alarm_rate < 1:
            raise ValueError(
                f"draws ({self.draws}) x false_alarm_rate ({self.false_alarm_rate}) must be "
                ">= 1 to calibrate that rate: raise draws"
            )
        return self

    @classmethod
    def from_monitor(cls, monitor: MonitorSpec, **overrides: Any) -> DriftSettings:
        """From ``spec.monitor`` (``drift_window``, ``false_alarm_rate``, ``drift_min_rows``
        where the spec has it); errors name the spec field."""
        values: dict[str, Any] = {
            "window": monitor.drift_window,
            "false_alarm_rate": monitor.false_alarm_rate,
            "min_rows": getattr(monitor, "drift_min_rows", DEFAULT_MIN_ROWS),
        }
        try:
            return cls(**{**values, **overrides})
        except ValidationError as err:
            fields = {"window": "drift_window", "min_rows": "drift_min_rows"}
            msgs = []
            for e in err.errors():
                loc = ".".join(str(p) for p in e["loc"])
                msgs.append(f"monitor.{fields.get(loc, loc) or 'drift'}: {e['msg']}")
            raise SpecError("; ".join(msgs)) from None


class ColumnDrift(BaseModel):
    """One column's comparison of the window with the reference."""

    column: str
    kind: ColumnKind
    test: TestName
    n: int = Field(description="Window values compared (finite numbers / all categories).")
    statistic: float = Field(description="KS distance D, chi-square, or JS distance.")
    p_value: float | None = Field(description="KS / chi-square p-value (None for JS).")
    threshold: float = Field(
        description="Calibrated threshold: on the p-value (KS, chi-square), on the distance (JS)."
    )
    distance: float = Field(
        description="Wasserstein-1 in the column's units (numeric) or JS distance (categorical)."
    )
    psi: float
    psi_band: PsiBand
    drifted: bool


class DriftReport(BaseModel):
    """One drift check of one window."""

    status: Status
    drifted: bool = Field(description="Any feature or prediction column drifted.")
    n_rows: int
    window: int
    min_rows: int
    false_alarm_rate: float
    correction: Correction
    p_threshold: float | None = Field(description="The p-value below which a column drifted.")
    features: list[ColumnDrift] = Field(default_factory=list)
    prediction: list[ColumnDrift] = Field(default_factory=list)
    prediction_drifted: bool = False
    prediction_psi: float | None = Field(
        default=None, description="PSI of P(positive) (binary), else of the class or value."
    )
    checked_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    message: str

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in (*self.features, *self.prediction) if c.drifted]


class ScoredRow(Protocol):
    """What the check reads from one served prediction (``serving.schemas.Prediction``)."""

    @property
    def prediction(self) -> Any: ...

    @property
    def probabilities(self) -> Mapping[str, float] | None: ...


Preprocess = Callable[["pd.DataFrame"], "pd.DataFrame"]

_CACHE: dict[tuple[Any, ...], Calibration] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def _prediction_kinds(task: str | None, columns: Sequence[str]) -> dict[str, ColumnKind]:
    kinds: dict[str, ColumnKind] = {}
    if PREDICTION_COLUMN in columns and task is not None:
        kinds[PREDICTION_COLUMN] = "numeric" if task == "regression" else "categorical"
    if SCORE_COLUMN in columns and task == "binary":
        kinds[SCORE_COLUMN] = "numeric"
    return kinds


class DriftDetector:
    """Checks windows against one reference sample.

    `reference`: the feature columns of `kinds` (plus ``__prediction__`` / ``__score__`` for
    prediction drift, see ``core.stats``); `task` ("binary" | "multiclass" | "regression")
    says how to read predictions and `positive_class` which probability is the score of a
    binary model. `preprocess` (the model's cleaning) is applied to each window's raw rows
    so they are compared in the form the reference was sampled in. `reference_key` names
    the reference in the calibration cache (default: a content hash).
    """

    def __init__(
        self,
        reference: pd.DataFrame,
        kinds: Mapping[str, ColumnKind],
        *,
        task: str | None = None,
        positive_class: str | None = None,
        settings: DriftSettings | None = None,
        preprocess: Preprocess | None = None,
        reference_key: str | None = None,
    ) -> None:
        missing = [c for c in kinds if c not in reference.columns]
        if missing:
            raise KubeloopError(f"drift reference: column(s) {missing} not in the reference sample")
        if len(reference) < 2:
            raise KubeloopError("drift reference: the reference sample needs at least 2 rows")
        self.settings = settings or DriftSettings()
        self.features = list(kinds)
        self.task = task
        self.positive_class = positive_class
        self.preprocess = preprocess
        self.prediction_kinds = _prediction_kinds(task, list(reference.columns))
        all_kinds = {**kinds, **self.prediction_kinds}
        self.n_reference = len(reference)
        self._plans = build_plans(
            reference, all_kinds, self.settings.window, self.settings.min_expected
        )
        if reference_key is None:
            from kubeloop.components.core.io import fingerprint

            reference_key = fingerprint(reference[list(all_kinds)])
        self._key = (reference_key, *self.settings.model_dump().values())
        self._calibration: Calibration | None = None

    @classmethod
    def from_model(
        cls, model: RegisteredModel, settings: DriftSettings | None = None
    ) -> DriftDetector:
        """The detector of a registered model: its reference sample, feature kinds,
        task, positive class and cleaning."""
        sample = model.reference_sample()
        if sample is None:
            raise KubeloopError(
                f"model {model.info.tag} has no reference_sample.parquet (registered before "
                "drift checks kept one): retrain or re-register it to monitor drift"
            )
        features = model.reference_stats.get("features", {})
        kinds: dict[str, ColumnKind] = {
            c: ("numeric" if f.get("kind") == "numeric" else "categorical")
            for c, f in features.items()
        }
        classes = model.classes
        return cls(
            sample,
            kinds,
            task=model.task,
            positive_class=str(classes[1]) if model.task == "binary" else None,
            settings=settings,
            preprocess=model.preprocess,
            reference_key=model.info.tag,
        )

    # ------------------------------------------------------------------ calibration

    @property
    def calibrated(self) -> bool:
        return self._calibration is not None

    def calibrate(self) -> Calibration:
        """The thresholds for this reference and settings (computed once per process)."""
        if self._calibration is None:
            with _CACHE_LOCK:
                found = _CACHE.get(self._key)
            if found is None:
                s = self.settings
                found = calibrate(
                    self._plans,
                    n_reference=self.n_reference,
                    window=s.window,
                    false_alarm_rate=s.false_alarm_rate,
                    draws=s.draws,
                    seed=s.seed,
                )
                with _CACHE_LOCK:
                    if len(_CACHE) >= _CACHE_SIZE:
                        _CACHE.pop(next(iter(_CACHE)))
                    _CACHE[self._key] = found
            self._calibration = found
        return self._calibration

    @property
    def p_threshold(self) -> float:
        cal = self.calibrate()
        return cal.p_threshold if self.settings.correction == "minp" else cal.bonferroni_threshold

    # ------------------------------------------------------------------ checks

    def window_frame(
        self, rows: Sequence[Mapping[str, Any]], predictions: Sequence[ScoredRow] | None = None
    ) -> pd.DataFrame:
        """Raw request rows (+ their predictions) as the frame :meth:`check_frame` takes."""
        import pandas as pd

        df = pd.DataFrame.from_records(list(rows), columns=self.features)
        if self.preprocess is not None and len(df):
            df = self.preprocess(df).reset_index(drop=True)
        if predictions is not None and len(predictions) == len(df):
            if PREDICTION_COLUMN in self.prediction_kinds:
                if self.task == "regression":
                    df[PREDICTION_COLUMN] = [_as_float(p.prediction) for p in predictions]
                else:
                    df[PREDICTION_COLUMN] = [str(p.prediction) for p in predictions]
            if SCORE_COLUMN in self.prediction_kinds and self.positive_class is not None:
                pos = self.positive_class
                df[SCORE_COLUMN] = [
                    _as_float((p.probabilities or {}).get(pos)) for p in predictions
                ]
        return df

    def check(
        self, rows: Sequence[Mapping[str, Any]], predictions: Sequence[ScoredRow] | None = None
    ) -> DriftReport:
        """Check raw request rows and the predictions served for them."""
        if len(rows) < self.settings.min_rows:
            return self._insufficient(len(rows))
        return self.check_frame(self.window_frame(rows, predictions))

    def check_frame(self, window: pd.DataFrame) -> DriftReport:
        """Check a window already in reference form (feature columns, prediction columns
        where available; columns absent from the window are not tested)."""
        s = self.settings
        n = len(window)
        if n < s.min_rows:
            return self._insufficient(n)
        threshold = self.p_threshold
        cal = self.calibrate()
        results: dict[str, ColumnDrift] = {}
        for plan in self._plans:
            if plan.name in window.columns:
                results[plan.name] = _compare(plan, window[plan.name], threshold, cal)
        features = [results[c] for c in self.features if c in results]
        prediction = [results[c] for c in self.prediction_kinds if c in results]
        headline = results.get(SCORE_COLUMN) or results.get(PREDICTION_COLUMN)
        drifted = [c.column for c in (*features, *prediction) if c.drifted]
        message = (
            f"drift in {', '.join(drifted)}" if drifted else "no drift"
        ) + f" ({n} rows, p-value threshold {threshold:.3g})"
        return DriftReport(
            status="drift" if drifted else "ok",
            drifted=bool(drifted),
            n_rows=n,
            window=s.window,
            min_rows=s.min_rows,
            false_alarm_rate=s.false_alarm_rate,
            correction=s.correction,
            p_threshold=threshold,
            features=features,
            prediction=prediction,
            prediction_drifted=any(c.drifted for c in prediction),
            prediction_psi=headline.psi if headline else None,
            message=message,
        )

    def _insufficient(self, n: int) -> DriftReport:
        s = self.settings
        return DriftReport(
            status="insufficient-data",
            drifted=False,
            n_rows=n,
            window=s.window,
            min_rows=s.min_rows,
            false_alarm_rate=s.false_alarm_rate,
            correction=s.correction,
            p_threshold=None,
            message=f"insufficient data: {n} rows, a check needs at least {s.min_rows}",
        )


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _compare(plan: Plan, column: pd.Series, threshold: float, cal: Calibration) -> ColumnDrift:
    if isinstance(plan, NumericPlan):
        from scipy.stats import wasserstein_distance

        values = as_float_array(column)
        finite = np.sort(values[np.isfinite(values)])
        d, p = (float(x) for x in plan.ks(plan.window_counts(values), plan.reference_counts))
        w = float(wasserstein_distance(finite, plan.sorted_values)) if finite.size else 0.0
        value = psi(plan.psi_counts(finite), plan.reference_psi)
        return ColumnDrift(
            column=plan.name,
            kind="numeric",
            test="ks",
            n=int(finite.size),
            statistic=d,
            p_value=p,
            threshold=threshold,
            distance=w,
            psi=value,
            psi_band=psi_band(value),
            drifted=p < threshold,
        )
    return _compare_categorical(plan, column, threshold, cal)


def _compare_categorical(
    plan: CategoricalPlan, column: pd.Series, threshold: float, cal: Calibration
) -> ColumnDrift:
    counts = plan.window_counts(column)
    js = float(js_distance(counts, plan.reference_counts))
    value = psi(counts, plan.reference_counts)
    if plan.test == "jensen-shannon":
        limit = cal.js_thresholds.get(plan.name, 0.0)
        stat, p, drifted, thr = js, None, js > limit, limit
    else:
        chi, dof = chi_square(counts, plan.reference_counts)
        p = float(chi_square_p_value(chi, dof))
        stat, drifted, thr = float(chi), p < threshold, threshold
    return ColumnDrift(
        column=plan.name,
        kind="categorical",
        test=plan.test,
        n=int(counts.sum()),
        statistic=stat,
        p_value=p,
        threshold=thr,
        distance=js,
        psi=value,
        psi_band=psi_band(value),
        drifted=bool(drifted),
    )
