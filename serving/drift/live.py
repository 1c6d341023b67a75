"""The gateway's live drift checks: which model each variant answers with decides its window.

The gateway calls :meth:`LiveDrift.observe` with the rows a variant answered and their
predictions. The first rows from a model the variant was not watched with (at start-up,
after ``/admin/canary``, promote or rollback) start a new window: the model's detector
(its registered reference sample, ``spec.monitor`` settings) is built in a background thread
and the rows that arrive meanwhile are not counted. A model registered without a reference
sample is logged once and not watched. Checks run in :class:`DriftMonitor`'s thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubeloop.serving.drift.monitor import DriftMonitor

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec
    from kubeloop.components.register.registry import RegisteredModel
    from kubeloop.serving.drift.detector import DriftDetector, ScoredRow

logger = logging.getLogger(__name__)

DetectorFactory = Callable[[str], "DriftDetector"]


class LiveDrift:
    """Per-variant drift windows that follow the model each variant serves."""

    def __init__(
        self,
        spec: Spec,
        *,
        monitor: DriftMonitor | None = None,
        loader: Callable[[str], RegisteredModel] | None = None,
    ) -> None:
        from kubeloop.serving.drift.detector import DriftSettings

        self.settings = DriftSettings.from_monitor(spec.monitor)
        self.monitor = monitor if monitor is not None else DriftMonitor()
        self._loader = loader
        self._watched: dict[str, str] = {}  # variant -> model its window is (being) built for
        self._lock = threading.Lock()

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()

    def observe(
        self,
        variant: str,
        model: str,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[ScoredRow],
    ) -> None:
        """Rows `variant` answered with `model`: counted in its window, or the start of a
        new window when `model` is not the one the variant is watched with."""
        with self._lock:
            if self._watched.get(variant) != model:
                self._watched[variant] = model
                self.monitor.detach(variant)  # the old model's window and series go
                threading.Thread(
                    target=self._attach, args=(variant, model), name="drift-attach", daemon=True
                ).start()
                return
        self.monitor.observe(variant, rows, predictions)

    def _attach(self, variant: str, model: str) -> None:
        from kubeloop.components.register import registry
        from kubeloop.serving.drift.detector import DriftDetector

        try:
            registered = (self._loader or registry.load)(model)
            detector = DriftDetector.from_model(registered, self.settings)
        except Exception as err:  # no reference sample, unreadable store: serve unwatched
            logger.warning("drift checks off for %s (%s): %s", variant, model, err)
            return
        with self._lock:
            if self._watched.get(variant) == model:  # not replaced meanwhile
                self.monitor.attach(variant, detector, model)
