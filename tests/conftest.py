"""Shared fixtures: a small dirty churn demo (generated once) and a spec per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeloop.components.core.spec import Spec, load_spec

DEMO_ROWS = 2000


@pytest.fixture(scope="session")
def churn_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """churn.csv + kubeloop.yaml (2,000 rows, seed 0); treat as read-only."""
    from kubeloop.components.datasets.churn import write_demo

    out = tmp_path_factory.mktemp("churn_demo")
    write_demo(out, rows=DEMO_ROWS, seed=0)
    return out


@pytest.fixture
def churn_spec(churn_demo_dir: Path, tmp_path: Path) -> Spec:
    """The demo spec, with its workdir (validation reference etc.) inside this test's tmp."""
    spec = load_spec(churn_demo_dir / "kubeloop.yaml")
    return spec.model_copy(update={"workdir": str(tmp_path / ".kubeloop")})


@pytest.fixture
def churn_ingested(churn_spec: Spec, tmp_path: Path) -> Path:
    """The demo data after ingest, as Parquet in this test's tmp."""
    from kubeloop.components.ingest.task import run

    out = tmp_path / "ingested.parquet"
    run(churn_spec, str(out), str(tmp_path / "ingest_audit.json"))
    return out
