"""Sliding windows of live traffic per variant, checked for drift off the request path.

The request path calls :meth:`DriftMonitor.observe` with the rows it served and their
predictions: two bounded ``deque.extend`` calls under a per-variant lock, O(rows), no
statistics. A background thread (:meth:`DriftMonitor.start`) wakes every
``check_interval_s`` seconds, or as soon as a variant has ``check_every_rows`` new rows,
takes a snapshot of each window that changed, runs its detector (calibrating it first, once)
and exports the report as Prometheus gauges (``drift.metrics``).

When a variant starts serving another model (:meth:`attach` again), its window starts
empty and the old model's series are removed, so no stale alarm outlives the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeloop.serving.drift.detector import DriftDetector, DriftReport, ScoredRow
    from kubeloop.serving.drift.metrics import DriftMetrics

logger = logging.getLogger(__name__)

OnReport = Callable[[str, "DriftReport"], None]


@dataclass
class _Window:
    detector: DriftDetector
    model: str
    rows: deque[Mapping[str, Any]]
    predictions: deque[Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    new_rows: int = 0  # observed since the last snapshot
    report: DriftReport | None = None


class DriftMonitor:
    """Per-variant windows of ``window`` rows (the detectors' ``settings.window``).

    `metrics`: where reports go (default: the process's :func:`drift_metrics`; tests pass a
    registry-bound one); `on_report(variant, report)` is called after each check.
    `check_every_rows` defaults to a quarter of the window.
    """

    def __init__(
        self,
        *,
        check_interval_s: float = 30.0,
        check_every_rows: int | None = None,
        metrics: DriftMetrics | None = None,
        on_report: OnReport | None = None,
    ) -> None:
        if check_interval_s <= 0:
            raise ValueError(f"check_interval_s must be > 0, got {check_interval_s}")
        self.check_interval_s = check_interval_s
        self.check_every_rows = check_every_rows
        self._metrics = metrics
        self._on_report = on_report
        self._windows: dict[str, _Window] = {}
        # Attach / detach vs a check's export: a model's series are never exported after
        # they were forgotten.
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ wiring

    def attach(self, variant: str, detector: DriftDetector, model: str) -> None:
        """Watch `variant`, now served by `model`, with `detector` (a fresh, empty window)."""
        size = detector.settings.window
        with self._export_lock:
            old = self._windows.get(variant)
            window = _Window(detector, model, deque(maxlen=size), deque(maxlen=size))
            self._windows[variant] = window
            if old is not None and old.model != model:
                self._forget(variant, old)

    def detach(self, variant: str) -> None:
        with self._export_lock:
            old = self._windows.pop(variant, None)
            if old is not None:
                self._forget(variant, old)

    def _forget(self, variant: str, old: _Window) -> None:
        columns = [*old.detector.features, *old.detector.prediction_kinds]
        self.metrics.forget(variant, old.model, columns)

    @property
    def metrics(self) -> DriftMetrics:
        if self._metrics is None:
            from kubeloop.serving.drift.metrics import drift_metrics

            self._metrics = drift_metrics()
        return self._metrics

    @property
    def variants(self) -> list[str]:
        return list(self._windows)

    # ------------------------------------------------------------------ request path

    def observe(
        self, variant: str, rows: Sequence[Mapping[str, Any]], predictions: Sequence[ScoredRow]
    ) -> None:
        """Add served rows and their predictions to `variant`'s window (no-op for a variant
        not attached). Cheap: bounded appends, never a statistic."""
        w = self._windows.get(variant)
        if w is None:
            return
        if len(rows) != len(predictions):
            raise ValueError(f"observe: {len(rows)} rows but {len(predictions)} predictions")
        with w.lock:
            w.rows.extend(rows)
            w.predictions.extend(predictions)
            w.new_rows += len(rows)
            due = w.new_rows >= (self.check_every_rows or max(1, w.rows.maxlen or 1) // 4)
        if due:
            self._wake.set()

    # ------------------------------------------------------------------ checks

    def check(self, variant: str) -> DriftReport | None:
        """Check `variant`'s window now, in the caller's thread, and export the report
        (None when the variant is not watched, e.g. detached meanwhile)."""
        w = self._windows.get(variant)
        if w is None:
            return None
        with w.lock:
            rows, predictions = list(w.rows), list(w.predictions)
            w.new_rows = 0
        report = w.detector.check(rows, predictions)
        with self._export_lock:  # a window detached meanwhile exports nothing
            if self._windows.get(variant) is not w:
                return report
            self.metrics.export(variant, w.model, report)
            w.report = report
        if self._on_report is not None:
            self._on_report(variant, report)
        return report

    def report(self, variant: str) -> DriftReport | None:
        """The last report of `variant` (None before its first check)."""
        w = self._windows.get(variant)
        return None if w is None else w.report

    def check_changed(self) -> None:
        """Check every variant whose window got rows since its last check."""
        for variant, w in list(self._windows.items()):
            if w.new_rows == 0:
                continue
            try:
                self.check(variant)
            except Exception:  # one bad check must not stop monitoring
                logger.exception("drift check of variant %s failed", variant)

    # ------------------------------------------------------------------ background

    def start(self) -> None:
        """Start the background checker (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DriftMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # Calibrate up front, so the first check after start-up does not wait for it.
        for variant, w in list(self._windows.items()):
            if self._stop.is_set():
                return
            try:
                w.detector.calibrate()
            except Exception:
                logger.exception("drift calibration of variant %s failed", variant)
        next_tick = time.monotonic() + self.check_interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.check_interval_s
            self.check_changed()
