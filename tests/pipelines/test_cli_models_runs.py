"""`kubeloop models` and `kubeloop runs`, run in-process on the sub-apps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.components.core.spec import load_spec
from kubeloop.components.evaluate.task import EvalResult, GateResult
from kubeloop.components.register import registry
from kubeloop.components.tracking.store import RunStore
from kubeloop.pipelines.cli.models import app as models_app
from kubeloop.pipelines.cli.runs import app as runs_app

runner = CliRunner()


@pytest.fixture()
def spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    path = tmp_path / "kubeloop.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "churn", "workdir": "state", "data": {"source": "d.csv", "label": "y"}}
        )
    )
    return path


def register(spec: Any, tmp_path: Path, value: float) -> str:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "model.pt").write_text("w")
    (tmp_path / "clean.json").write_text("{}")
    result = EvalResult(
        task="binary",
        metrics={"roc_auc": value, "f1": 0.5},
        primary_metric="roc_auc",
        primary_value=value,
        higher_is_better=True,
        threshold=0.4,
        classes=[0, 1],
        gate=GateResult(passed=True, reasons=["ok"], candidate_value=value),
    )
    return registry.register(
        spec,
        model_dir=str(model_dir),
        clean_params_path=str(tmp_path / "clean.json"),
        eval_result=result,
        data_fingerprint="fp",
        run_id="r1",
        reference_stats={},
    )


def test_models_list_show_stage(spec_file: Path, tmp_path: Path) -> None:
    empty = runner.invoke(models_app, ["list"])
    assert empty.exit_code == 0 and "no registered models" in empty.output
    spec = load_spec(spec_file)
    a = register(spec, tmp_path, 0.81)
    b = register(spec, tmp_path, 0.85)

    res = runner.invoke(models_app, ["list"])
    assert res.exit_code == 0, res.output
    assert a in res.output and b in res.output and "roc_auc 0.8500" in res.output
    assert res.output.index(b) < res.output.index(a)  # newest first

    res = runner.invoke(models_app, ["list", "--name", "churn", "--json"])
    rows = json.loads(res.output)
    assert [r["tag"] for r in rows] == [b, a] and rows[0]["stage"] == "candidate"

    res = runner.invoke(models_app, ["stage", a, "production"])
    assert res.exit_code == 0 and f"{a} is now production" in res.output
    res = runner.invoke(models_app, ["show", "churn:production", "--json"])
    shown = json.loads(res.output)
    assert shown["tag"] == a and shown["stage"] == "production"
    assert shown["metrics"]["roc_auc"] == 0.81 and shown["metadata"]["threshold"] == 0.4
    assert {"model_card.md", "metrics.json", "model/model.pt"} <= {
        f["path"] for f in shown["files"]
    }
    assert shown["model_card"].endswith("model_card.md")

    res = runner.invoke(models_app, ["show", b])
    assert res.exit_code == 0
    assert "model card:" in res.output and "roc_auc" in res.output and "candidate" in res.output


def test_models_errors_exit_1(spec_file: Path) -> None:
    res = runner.invoke(models_app, ["show", "churn:nope"])
    assert res.exit_code == 1
    assert "not found" in res.output and "kubeloop models list" in res.output
    res = runner.invoke(models_app, ["stage", "churn:x", "live"])
    assert res.exit_code == 1 and "unknown stage 'live'" in res.output


def make_runs(spec_file: Path) -> tuple[Any, RunStore]:
    spec = load_spec(spec_file)
    store = RunStore.for_spec(spec)
    store.start("20240101-000000-aaaa", spec)
    store.update(
        "20240101-000000-aaaa",
        metrics={"roc_auc": 0.8, "f1": 0.6},
        primary_metric="roc_auc",
        params={"learning_rate": 0.001},
    )
    store.finish("20240101-000000-aaaa", "succeeded")
    other = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 5})})
    store.start("20240102-000000-bbbb", other)
    store.update(
        "20240102-000000-bbbb",
        metrics={"roc_auc": 0.85},
        primary_metric="roc_auc",
        params={"learning_rate": 0.003},
        model_tag="churn:xyz",
        gate={"passed": True, "reasons": ["roc_auc 0.850 >= minimum 0.700"]},
    )
    store.finish("20240102-000000-bbbb", "succeeded")
    return spec, store


def test_runs_list_show_compare(spec_file: Path) -> None:
    res = runner.invoke(runs_app, ["list", "--spec", str(spec_file)])
    assert res.exit_code == 0 and "no runs yet" in res.output
    _, store = make_runs(spec_file)

    res = runner.invoke(runs_app, ["list", "--spec", str(spec_file)])
    assert res.exit_code == 0, res.output
    assert res.output.index("20240102-000000-bbbb") < res.output.index("20240101-000000-aaaa")
    assert "churn:xyz" in res.output and "roc_auc 0.8500" in res.output

    res = runner.invoke(runs_app, ["list", "--spec", str(spec_file), "--json"])
    assert [r["run_id"] for r in json.loads(res.output)] == [
        "20240102-000000-bbbb",
        "20240101-000000-aaaa",
    ]

    res = runner.invoke(runs_app, ["show", "20240102", "--spec", str(spec_file)])
    assert res.exit_code == 0, res.output
    assert "roc_auc 0.850 >= minimum 0.700" in res.output
    assert f"kubeloop pipeline run --spec {store.spec_path('20240102')}" in res.output
    res = runner.invoke(runs_app, ["show", "20240102", "--spec", str(spec_file), "--json"])
    shown = json.loads(res.output)
    assert shown["model_tag"] == "churn:xyz" and shown["spec_path"].endswith("spec.yaml")

    res = runner.invoke(
        runs_app, ["compare", "20240101", "20240102", "--spec", str(spec_file), "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = {(r["section"], r["key"]): (r["a"], r["b"]) for r in json.loads(res.output)["rows"]}
    assert rows[("metric", "roc_auc")] == (0.8, 0.85)
    assert rows[("metric", "f1")] == (0.6, None)
    assert rows[("param", "learning_rate")] == (0.001, 0.003)
    assert rows[("spec", "train.epochs")] == (30, 5)
    assert ("spec", "name") not in rows  # only differences
    res = runner.invoke(runs_app, ["compare", "20240101", "20240102", "--spec", str(spec_file)])
    assert res.exit_code == 0 and "+0.0500" in res.output and "learning_rate" in res.output


def test_runs_errors_exit_1(spec_file: Path, tmp_path: Path) -> None:
    make_runs(spec_file)
    res = runner.invoke(runs_app, ["show", "nope", "--spec", str(spec_file)])
    assert res.exit_code == 1 and "kubeloop runs list" in res.output
    res = runner.invoke(runs_app, ["compare", "2024", "20240101", "--spec", str(spec_file)])
    assert res.exit_code == 1 and "ambiguous" in res.output
    res = runner.invoke(runs_app, ["list", "--spec", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 1 and "spec file not found" in res.output
