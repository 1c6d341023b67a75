"""Prometheus gauges of live drift checks: names defined once, objects created lazily.

Labels: ``variant`` (stable | canary | shadow), ``model`` (the served tag ``name:version``)
and, per column, ``feature`` (a feature name, or ``__prediction__`` / ``__score__`` for the
model's predicted class or value / P(positive class)). Alert rules should fire on
:data:`DRIFT_WINDOW_DRIFTED` (the whole window, false alarms controlled at
``monitor.false_alarm_rate`` per check across all columns), not on one column's
:data:`DRIFT_DETECTED`. PSI is in :data:`DRIFT_SCORE` with the usual reading: < 0.1
stable, 0.1–0.2 moderate, > 0.2 significant.

Created on the first :func:`drift_metrics` call, not at import (see ``serving.metrics``:
under ``bentoml serve`` the worker sets ``PROMETHEUS_MULTIPROC_DIR`` first). Gauges use
``livemostrecent`` so multiprocess mode adds no ``pid`` label.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    from kubeloop.serving.drift.detector import DriftReport

PREFIX = "kubeloop_drift"
DRIFT_SCORE = f"{PREFIX}_score"  # variant, model, feature: PSI
DRIFT_DETECTED = f"{PREFIX}_detected"  # variant, model, feature: 0/1
DRIFT_P_VALUE = f"{PREFIX}_p_value"  # variant, model, feature (KS / chi-square)
DRIFT_STATISTIC = f"{PREFIX}_statistic"  # variant, model, feature: KS D / chi-square / JS
DRIFT_P_VALUE_THRESHOLD = f"{PREFIX}_p_value_threshold"  # variant, model: calibrated
DRIFT_WINDOW_ROWS = f"{PREFIX}_window_rows"  # variant, model: rows in the checked window
DRIFT_WINDOW_DRIFTED = f"{PREFIX}_window_drifted"  # variant, model: 0/1 (what alerts use)
DRIFT_STATUS = f"{PREFIX}_status"  # variant, model, status: 1 for the last check's status
DRIFT_LAST_CHECK_TIMESTAMP_SECONDS = f"{PREFIX}_last_check_timestamp_seconds"  # variant, model
DRIFT_CHECKS_TOTAL = f"{PREFIX}_checks_total"  # variant, model, status
PREDICTION_DRIFT_PSI = "kubeloop_prediction_drift_psi"  # variant, model
PREDICTION_DRIFT_DETECTED = "kubeloop_prediction_drift_detected"  # variant, model: 0/1

DriftStatus = Literal["ok", "drift", "insufficient-data"]
STATUSES: tuple[DriftStatus, ...] = ("ok", "drift", "insufficient-data")


@dataclass(frozen=True)
class DriftMetrics:
    score: Gauge
    detected: Gauge
    p_value: Gauge
    statistic: Gauge
    p_threshold: Gauge
    window_rows: Gauge
    window_drifted: Gauge
    status: Gauge
    last_check: Gauge
    checks: Counter
    prediction_psi: Gauge
    prediction_detected: Gauge
    exported: set[tuple[str, str]] = field(default_factory=set)  # (variant, model) pairs

    def export(self, variant: str, model: str, report: DriftReport) -> None:
        """Set every gauge of (variant, model) from one check."""
        vm = {"variant": variant, "model": model}
        self.exported.add((variant, model))
        self.window_rows.labels(**vm).set(report.n_rows)
        self.window_drifted.labels(**vm).set(float(report.drifted))
        for s in STATUSES:
            self.status.labels(**vm, status=s).set(float(s == report.status))
        self.last_check.labels(**vm).set(report.checked_at.timestamp())
        self.checks.labels(**vm, status=report.status).inc()
        if report.p_threshold is not None:
            self.p_threshold.labels(**vm).set(report.p_threshold)
        for col in (*report.features, *report.prediction):
            labels = {**vm, "feature": col.column}
            self.score.labels(**labels).set(col.psi)
            self.detected.labels(**labels).set(float(col.drifted))
            self.statistic.labels(**labels).set(col.statistic)
            if col.p_value is not None:
                self.p_value.labels(**labels).set(col.p_value)
        if report.status != "insufficient-data":
            self.prediction_detected.labels(**vm).set(float(report.prediction_drifted))
            if report.prediction_psi is not None:
                self.prediction_psi.labels(**vm).set(report.prediction_psi)

    def forget(self, variant: str, model: str, features: list[str]) -> None:
        """Drop the series of a model no longer served by `variant` (no stale alarms).

        Under ``bentoml serve`` metrics are in multiprocess mode, where prometheus-client
        cannot remove a series (it stays in the shared files): the alarm gauges are set to 0
        first, so a series that stays never fires an alert."""
        vm = (variant, model)
        if vm in self.exported:
            self.exported.discard(vm)
            labels = {"variant": variant, "model": model}
            self.window_drifted.labels(**labels).set(0.0)
            self.prediction_detected.labels(**labels).set(0.0)
            for f in features:
                self.detected.labels(**labels, feature=f).set(0.0)
            for s in STATUSES:
                self.status.labels(**labels, status=s).set(0.0)
        for gauge in (self.score, self.detected, self.p_value, self.statistic):
            for f in features:
                _remove(gauge, *vm, f)
        for gauge in (
            self.p_threshold,
            self.window_rows,
            self.window_drifted,
            self.last_check,
            self.prediction_psi,
            self.prediction_detected,
        ):
            _remove(gauge, *vm)
        for s in STATUSES:
            _remove(self.status, *vm, s)
            _remove(self.checks, *vm, s)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError), warnings.catch_warnings():  # KeyError: never set
        warnings.simplefilter("ignore", UserWarning)  # multiprocess mode: see forget()
        metric.remove(*labels)


@functools.cache
def drift_metrics() -> DriftMetrics:
    """The process-wide drift metric objects (created on first use)."""
    return build_drift_metrics()


def build_drift_metrics(registry: CollectorRegistry | None = None) -> DriftMetrics:
    """Drift metric objects registered in `registry` (default: prometheus_client's)."""
    from prometheus_client import REGISTRY, Counter, Gauge

    reg = REGISTRY if registry is None else registry
    mode: Literal["livemostrecent"] = "livemostrecent"
    vm = ["variant", "model"]
    vmf = [*vm, "feature"]

    def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
        return Gauge(name, doc, labels, multiprocess_mode=mode, registry=reg)

    return DriftMetrics(
        score=gauge(
            DRIFT_SCORE,
            "Population stability index of a feature (or prediction) in the last checked "
            "window vs the model's reference: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant.",
            vmf,
        ),
        detected=gauge(
            DRIFT_DETECTED, "1 when the last check found this column drifted, else 0.", vmf
        ),
        p_value=gauge(
            DRIFT_P_VALUE, "p-value of the column's test (KS or chi-square) in the last check.", vmf
        ),
        statistic=gauge(
            DRIFT_STATISTIC,
            "Test statistic of the column in the last check (KS D, chi-square, or JS distance).",
            vmf,
        ),
        p_threshold=gauge(
            DRIFT_P_VALUE_THRESHOLD,
            "Calibrated p-value threshold: a column drifted when its p-value is below it.",
            vm,
        ),
        window_rows=gauge(DRIFT_WINDOW_ROWS, "Rows in the last checked window.", vm),
        window_drifted=gauge(
            DRIFT_WINDOW_DRIFTED,
            "1 when the last checked window drifted in any column (false alarms controlled "
            "at the configured rate per check), else 0.",
            vm,
        ),
        status=gauge(
            DRIFT_STATUS,
            "Status of the last check: 1 for the current one (ok, drift, insufficient-data).",
            [*vm, "status"],
        ),
        last_check=gauge(
            DRIFT_LAST_CHECK_TIMESTAMP_SECONDS, "Unix time of the last drift check.", vm
        ),
        checks=Counter(
            DRIFT_CHECKS_TOTAL.removesuffix("_total"),  # prometheus_client appends it
            "Drift checks run, by outcome status.",
            [*vm, "status"],
            registry=reg,
        ),
        prediction_psi=gauge(
            PREDICTION_DRIFT_PSI,
            "PSI of the model's output in the last checked window vs its predictions on the "
            "reference: P(positive) for binary models, else the class or value.",
            vm,
        ),
        prediction_detected=gauge(
            PREDICTION_DRIFT_DETECTED,
            "1 when the last check found the model's predictions drifted, else 0.",
            vm,
        ),
    )
