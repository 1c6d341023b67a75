"""Feedback test fixtures: the tiny binary pair and a regression model in a scratch BentoML
store (trained once per module), and a spec per test whose workdir (label log, prediction
log, rollouts) is the test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeloop.components.core.spec import Spec
from tests.serving_env import load, register_two_versions, write_spec
from tests.tiny_tasks import train_and_register_task


@pytest.fixture(scope="package")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("feedback_models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        stable, canary = register_two_versions(tmp / "models")
        reg = train_and_register_task(tmp / "reg", "regression", "tiny_regression")
        yield {"home": tmp / "bentoml", "stable": stable, "canary": canary, "reg": reg}


@pytest.fixture
def make_spec(
    models: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Spec]:
    """kubeloop.yaml in this test's tmp (monitor: live quality after 5 labels, window 20)."""
    monkeypatch.setenv("BENTOML_HOME", str(models["home"]))

    def make(**serve: Any) -> Spec:
        path = write_spec(tmp_path / "project", **serve)
        text = path.read_text() + "monitor: {min_labels: 5, quality_window: 20}\n"
        path.write_text(text)
        return load(path)

    return make
