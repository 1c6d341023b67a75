"""DriftMonitor: windows per variant, checks off the request path, gauges and their labels."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from kubeloop.serving.drift import DriftDetector, DriftMonitor, DriftReport, DriftSettings
from kubeloop.serving.drift import metrics as names
from kubeloop.serving.drift.metrics import build_drift_metrics
from kubeloop.serving.schemas import Prediction
from tests.serving.drift import synthetic

SETTINGS = DriftSettings(window=400, min_rows=100, draws=500, false_alarm_rate=0.01)


class CountingDetector(DriftDetector):
    """A real detector that counts its checks and the threads they ran in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []

    def check(self, rows: Any, predictions: Any = None) -> DriftReport:
        self.threads.append(threading.current_thread().name)
        return super().check(rows, predictions)


def make_detector(seed: int = 0) -> CountingDetector:
    ref = synthetic.frame(2000, np.random.default_rng(seed), numeric=2, categorical=1)
    return CountingDetector(ref, synthetic.kinds(2, 1), settings=SETTINGS)


def traffic(
    n: int, rng: np.random.Generator, **shift: Any
) -> tuple[list[dict[str, Any]], list[Prediction]]:
    rows = synthetic.frame(n, rng, numeric=2, categorical=1, **shift).to_dict("records")
    return rows, [Prediction(prediction=0.0, model="m:1") for _ in rows]


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_observe_only_appends_and_the_window_is_bounded(registry: CollectorRegistry) -> None:
    det = make_detector()
    monitor = DriftMonitor(metrics=build_drift_metrics(registry))
    monitor.attach("stable", det, "churn:v1")
    rng = np.random.default_rng(1)
    for _ in range(30):  # 3,000 rows through a 400-row window, no checker running
        monitor.observe("stable", *traffic(100, rng))
    assert det.threads == []  # no statistics on the request path
    assert value(registry, names.DRIFT_WINDOW_ROWS, variant="stable", model="churn:v1") is None
    monitor.observe("shadow", *traffic(10, rng))  # not attached: ignored
    with pytest.raises(ValueError, match="3 rows but 2 predictions"):
        monitor.observe("stable", [{}, {}, {}], [Prediction(prediction=1, model="m")] * 2)
    report = monitor.check("stable")
    assert report.n_rows == 400 and report.status == "ok"


def test_background_checks_export_gauges_with_variant_model_feature_labels(
    registry: CollectorRegistry,
) -> None:
    done = threading.Event()
    reports: list[tuple[str, DriftReport]] = []

    def on_report(variant: str, report: DriftReport) -> None:
        reports.append((variant, report))
        if {v for v, _ in reports} == {"stable", "canary"}:
            done.set()

    stable, canary = make_detector(), make_detector()
    monitor = DriftMonitor(
        metrics=build_drift_metrics(registry),
        check_interval_s=3600,
        check_every_rows=400,
        on_report=on_report,
    )
    monitor.attach("stable", stable, "churn:v1")
    monitor.attach("canary", canary, "churn:v2")
    rng = np.random.default_rng(2)
    with monitor:
        monitor.observe("stable", *traffic(400, rng))
        monitor.observe("canary", *traffic(400, rng, mean_shift=1.0))
        assert done.wait(120), "the background checker never reported"
    # the checks ran in the monitor's thread, not in the caller's
    assert set(stable.threads) == set(canary.threads) == {"drift-monitor"}

    labels = {"variant": "canary", "model": "churn:v2"}
    assert value(registry, names.DRIFT_WINDOW_ROWS, **labels) == 400
    assert value(registry, names.DRIFT_WINDOW_DRIFTED, **labels) == 1.0
    assert value(registry, names.DRIFT_DETECTED, **labels, feature="x0") == 1.0
    assert value(registry, names.DRIFT_DETECTED, **labels, feature="x1") == 0.0
    assert value(registry, names.DRIFT_SCORE, **labels, feature="x0") > 0.2  # PSI
    assert value(registry, names.DRIFT_P_VALUE, **labels, feature="c0") is not None
    assert value(registry, names.DRIFT_STATUS, **labels, status="drift") == 1.0
    assert value(registry, names.DRIFT_STATUS, **labels, status="ok") == 0.0
    assert value(registry, names.DRIFT_CHECKS_TOTAL, **labels, status="drift") == 1.0
    threshold = value(registry, names.DRIFT_P_VALUE_THRESHOLD, **labels)
    assert threshold is not None and 0 < threshold < 0.01
    stable_labels = {"variant": "stable", "model": "churn:v1"}
    assert value(registry, names.DRIFT_WINDOW_DRIFTED, **stable_labels) == 0.0
    assert monitor.report("canary") is not None


def test_insufficient_data_is_exported_as_a_status(registry: CollectorRegistry) -> None:
    monitor = DriftMonitor(metrics=build_drift_metrics(registry))
    monitor.attach("stable", make_detector(), "churn:v1")
    monitor.observe("stable", *traffic(50, np.random.default_rng(3)))
    assert monitor.check("stable").status == "insufficient-data"
    labels = {"variant": "stable", "model": "churn:v1"}
    assert value(registry, names.DRIFT_STATUS, **labels, status="insufficient-data") == 1.0
    assert value(registry, names.DRIFT_WINDOW_DRIFTED, **labels) == 0.0
    assert value(registry, names.DRIFT_WINDOW_ROWS, **labels) == 50


def test_a_new_model_starts_an_empty_window_and_drops_the_old_series(
    registry: CollectorRegistry,
) -> None:
    monitor = DriftMonitor(metrics=build_drift_metrics(registry))
    monitor.attach("canary", make_detector(), "churn:v2")
    monitor.observe("canary", *traffic(400, np.random.default_rng(4), mean_shift=1.0))
    monitor.check("canary")
    old = {"variant": "canary", "model": "churn:v2"}
    assert value(registry, names.DRIFT_WINDOW_DRIFTED, **old) == 1.0
    monitor.attach("canary", make_detector(), "churn:v3")
    assert value(registry, names.DRIFT_WINDOW_DRIFTED, **old) is None
    assert value(registry, names.DRIFT_DETECTED, **old, feature="x0") is None
    assert monitor.check("canary").n_rows == 0
    monitor.detach("canary")
    assert monitor.variants == []


def test_gauge_names_carry_the_project_prefix_and_units() -> None:
    exported = [
        getattr(names, n)
        for n in dir(names)
        if n.isupper() and n.startswith(("DRIFT_", "PREDICTION_DRIFT_"))
    ]
    assert all(n.startswith(("kubeloop_drift_", "kubeloop_prediction_drift_")) for n in exported)
    assert names.DRIFT_LAST_CHECK_TIMESTAMP_SECONDS.endswith("_seconds")
    assert names.DRIFT_CHECKS_TOTAL.endswith("_total")


def test_monitor_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="check_interval_s"):
        DriftMonitor(check_interval_s=0)


def test_window_frame_reads_served_predictions() -> None:
    ref = synthetic.frame(500, np.random.default_rng(5), numeric=1, categorical=0)
    ref["__prediction__"] = ref["x0"] * 2
    det = DriftDetector(ref, {"x0": "numeric"}, task="regression", settings=SETTINGS)
    rows = [{"x0": 1.0}, {"x0": 2.0}]
    frame = det.window_frame(rows, [Prediction(prediction=v, model="m") for v in (2.0, 4.0)])
    pd.testing.assert_frame_equal(
        frame, pd.DataFrame({"x0": [1.0, 2.0], "__prediction__": [2.0, 4.0]})
    )


MULTIPROCESS_CHECK = """
import sys
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from kubeloop.serving.drift import DriftReport
from kubeloop.serving.drift.metrics import build_drift_metrics

metrics = build_drift_metrics(CollectorRegistry())
report = DriftReport(
    status="drift", drifted=True, n_rows=300, window=300, min_rows=200,
    false_alarm_rate=0.01, correction="minp", p_threshold=0.001, message="drifted",
)
metrics.export("stable", "churn:old", report)
metrics.forget("stable", "churn:old", ["x"])
scrape = CollectorRegistry()
MultiProcessCollector(scrape)
print(scrape.get_sample_value(
    "kubeloop_drift_window_drifted", {"variant": "stable", "model": "churn:old"}
))
"""


def test_a_forgotten_model_cannot_alarm_in_multiprocess_mode(tmp_path: Any) -> None:
    """Under `bentoml serve` (multiprocess metrics) a series cannot be removed; the alarm
    gauge of a model the variant no longer serves must read 0, not its last verdict."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_CHECK], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] in ("0.0", "None"), out.stdout
