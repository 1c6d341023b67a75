"""Metrics the rules need that no service measures on its own.

``kubeloop_model_created_timestamp_seconds{model, stage}`` — when each registered model of a
project that is in a watched stage was trained (Unix seconds); ``ModelStale`` compares it with
``time()``. :class:`ModelAgeCollector` reads it from the model registry at scrape time, so
the value follows promotions without anyone setting it; the retrain trigger registers it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric

    from kubeloop.components.register.registry import ModelInfo

MODEL_CREATED_TIMESTAMP_SECONDS = "kubeloop_model_created_timestamp_seconds"
WATCHED_STAGES = ("production", "candidate")


def _registry_models(name: str) -> list[ModelInfo]:
    from kubeloop.components.register.registry import list_models

    return list_models(name)


class ModelAgeCollector:
    """A prometheus_client collector: one gauge sample per model of `name` in `stages`."""

    def __init__(
        self,
        name: str,
        stages: Sequence[str] = WATCHED_STAGES,
        list_models: Callable[[str], Iterable[ModelInfo]] = _registry_models,
    ) -> None:
        self.name = name
        self.stages = tuple(stages)
        self._list_models = list_models

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for model in self._list_models(self.name):
            if model.stage in self.stages:
                family.add_metric([model.tag, model.stage], model.created_at.timestamp())
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily(
            MODEL_CREATED_TIMESTAMP_SECONDS,
            "When the registered model was trained (Unix time), per model tag and stage.",
            labels=["model", "stage"],
        )
