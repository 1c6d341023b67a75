"""Fixtures of the rollout tests: a model store with a production and a candidate model
(trained once per session, copied per test so stage changes stay inside one test), and
a spec whose rollouts live in the test's tmp folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.register import registry


@dataclass(frozen=True)
class Models:
    stable: str  # production
    canary: str  # candidate


def register_pair(root: Path) -> Models:
    """Train the tiny model twice (other seeds: other data and weights); the first becomes
    production. BENTOML_HOME must point at a scratch store."""
    from tests.tiny_model import train_and_register

    def folder(name: str) -> Path:
        (root / name).mkdir(parents=True, exist_ok=True)
        return root / name

    stable = train_and_register(folder("stable"), seed=0)
    registry.set_stage(stable, "production")
    for seed in range(1, 6):  # a seed whose model does not beat production is gated out
        try:
            canary = train_and_register(folder(f"canary-{seed}"), seed=seed)
        except AssertionError:
            continue
        return Models(stable=stable, canary=canary)
    raise RuntimeError("no second tiny model passed the gate")


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Models]:
    root = tmp_path_factory.mktemp("rollout_models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        return root / "bentoml", register_pair(root)


@pytest.fixture
def models(
    trained_store: tuple[Path, Models], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Models:
    """This test's own copy of the store (stage changes stay here)."""
    home, pair = trained_store
    copy = tmp_path / "bentoml"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("*.lock"))
    monkeypatch.setenv("BENTOML_HOME", str(copy))
    return pair


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., Spec]:
    """A spec named like the tiny model, workdir in tmp; keyword args override `serve`."""

    def make(**serve: Any) -> Spec:
        base: dict[str, Any] = {
            "canary_steps": [20, 50, 100],
            "interval_s": 3.0,
            "min_requests": 10,
            "deadline_s": 600.0,
        }
        return parse_spec(
            {
                "name": "churn",
                "workdir": str(tmp_path / "wd"),
                "data": {"source": "raw.csv", "label": "y", "entity": "id"},
                "serve": {**base, **serve},
            }
        )

    return make


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KUBELOOP_ADMIN_TOKEN", "test-admin-token")
    yield "test-admin-token"
