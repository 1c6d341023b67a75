"""ModelAgeCollector: one sample per watched model, valued at its training time."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from kubeloop.serving.monitoring.metrics import MODEL_CREATED_TIMESTAMP_SECONDS, ModelAgeCollector


def _model(version: str, stage: str, day: int) -> Any:
    return SimpleNamespace(
        tag=f"churn:{version}", stage=stage, created_at=datetime(2026, 11, day, tzinfo=UTC)
    )


def test_watched_stages_only_with_their_training_time() -> None:
    asked: list[str] = []
    models = [_model("v3", "candidate", 20), _model("v2", "production", 10),
              _model("v1", "archived", 1)]  # fmt: skip

    def list_models(name: str) -> list[Any]:
        asked.append(name)
        return models

    registry = CollectorRegistry()
    registry.register(ModelAgeCollector("churn", list_models=list_models))
    value = registry.get_sample_value
    name = MODEL_CREATED_TIMESTAMP_SECONDS
    assert (
        value(name, {"model": "churn:v2", "stage": "production"})
        == datetime(2026, 11, 10, tzinfo=UTC).timestamp()
    )
    assert value(name, {"model": "churn:v3", "stage": "candidate"}) is not None
    assert value(name, {"model": "churn:v1", "stage": "archived"}) is None
    assert set(asked) == {"churn"}
    assert f"# TYPE {name} gauge" in generate_latest(registry).decode()
    # Read at scrape time: a promotion shows on the next scrape.
    models[0] = _model("v3", "production", 20)
    assert value(name, {"model": "churn:v3", "stage": "production"}) is not None
    assert value(name, {"model": "churn:v3", "stage": "candidate"}) is None
