"""Live drift detection: per-variant windows of served rows and predictions compared with the
reference sample registered with the model, thresholds calibrated to a false-alarm rate,
reports exported as Prometheus gauges (see ``detector``, ``calibration``, ``monitor``)."""

from __future__ import annotations

from kubeloop.serving.drift.detector import (
    ColumnDrift,
    DriftDetector,
    DriftReport,
    DriftSettings,
    ScoredRow,
)
from kubeloop.serving.drift.monitor import DriftMonitor

__all__ = [
    "ColumnDrift",
    "DriftDetector",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
    "ScoredRow",
]
