"""The gateway's live drift checks: which model each variant answers with decides its window.

The gateway calls :meth:`LiveDrift.observe` with the rows a variant answered and their
predictions. The first rows from a model the variant was not watched with (at start-up,
after ``/admin/canary``, promote or rollback) start a new window: the model's detector
(its registered reference sample, ``spec.monitor`` settings) is built in a background thread
once per model and kept while a variant serves it, and the rows that arrive meanwhile are
not counted. For a short while after a switch, rows still answered by the previous model
(requests in flight during the swap) are dropped instead of switching back. A model
registered without a reference sample is logged and not watched. Checks run in
:class:`DriftMonitor`'s thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubeloop.serving.drift.monitor import DriftMonitor

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec
    from kubeloop.components.register.registry import RegisteredModel
    from kubeloop.serving.drift.detector import DriftDetector, ScoredRow

logger = logging.getLogger(__name__)

SWITCH_GRACE_S = 30.0  # rows of the previous model after a switch are in-flight leftovers


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
        self._previous: dict[str, tuple[str, float]] = {}  # variant -> (model, switched at)
        self._detectors: dict[str, DriftDetector | None] = {}  # model -> detector (None: none)
        self._building: set[str] = set()  # models whose detector a thread is building
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
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
            watched = self._watched.get(variant)
            if watched != model:
                prev = self._previous.get(variant)
                if self._stopped or (
                    prev is not None
                    and prev[0] == model
                    and time.monotonic() - prev[1] < SWITCH_GRACE_S
                ):
                    return
                self._switch(variant, model, watched)
                return
        self.monitor.observe(variant, rows, predictions)

    def _switch(self, variant: str, model: str, old: str | None) -> None:
        """(Under the lock.) Watch `variant` with `model`: a new, empty window."""
        self._watched[variant] = model
        if old is not None:
            self._previous[variant] = (old, time.monotonic())
        # Detectors of models no variant serves any more are not kept.
        for tag in set(self._detectors) - set(self._watched.values()):
            del self._detectors[tag]
        self.monitor.detach(variant)  # the old model's window goes; its alarms read 0
        if model in self._detectors:
            self._attach(variant, model, self._detectors[model])
        elif model not in self._building:  # one build per model, shared by its variants
            self._building.add(model)
            threading.Thread(
                target=self._build, args=(variant, model), name="drift-detector", daemon=True
            ).start()

    def _build(self, variant: str, model: str) -> None:
        from kubeloop.components.register import registry
        from kubeloop.serving.drift.detector import DriftDetector

        detector: DriftDetector | None
        try:
            registered = (self._loader or registry.load)(model)
            detector = DriftDetector.from_model(registered, self.settings)
        except Exception as err:  # no reference sample, unreadable store: serve unwatched
            logger.warning("drift checks off for %s (%s): %s", variant, model, err)
            detector = None
        with self._lock:
            self._building.discard(model)
            self._detectors[model] = detector
            for watcher, watched in self._watched.items():
                if watched == model and not self._stopped:
                    self._attach(watcher, model, detector)

    def _attach(self, variant: str, model: str, detector: DriftDetector | None) -> None:
        if detector is not None:
            self.monitor.attach(variant, detector, model)
