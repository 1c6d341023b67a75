"""The whole training pipeline through kfp.local, for real: every component runs as a KFP
task in a subprocess, on the churn demo and on scikit-learn's bundled public datasets,
and bad inputs stop it with a clear error and nothing registered."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.components.core.spec import load_spec
from kubeloop.components.tracking.steps import read_events
from kubeloop.components.tracking.store import RunStore
from kubeloop.pipelines.cli.main import app
from kubeloop.pipelines.local import RunSummary, run_local
from kubeloop.serving.gateway import Gateway
from kubeloop.serving.prediction_log import PredictionLog
from kubeloop.serving.schemas import GatewayPrediction
from kubeloop.serving.variant import MODEL_TAG_ENV, ModelVariant

pytestmark = pytest.mark.slow
ALL_STEPS = {
    "ingest", "validate", "split", "clean", "features", "create-study", "select-best", "train",
    "evaluate", "register",
}  # fmt: skip


@pytest.fixture(autouse=True)
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private BentoML store; the pipeline's subprocesses inherit the variable."""
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home


def _models(name: str) -> list[Any]:
    from kubeloop.components.register import registry

    return registry.list_models(name)


def _edit_spec(path: Path, **sections: dict[str, Any]) -> Path:
    raw = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(spec_path: Path) -> RunSummary:
    return run_local(load_spec(spec_path))


def test_demo_pipeline_registers_a_candidate_then_gates_against_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubeloop.components.datasets.churn import write_demo

    paths = write_demo(tmp_path / "demo", rows=4000, seed=0)
    spec_path = _edit_spec(
        Path(paths["spec"]),
        train={"epochs": 8},
        tune={"trials": 2, "parallelism": 2, "epochs": 2},
    )
    first = _run(spec_path)
    assert first.status == "succeeded", first
    assert first.gate_passed is True
    assert first.model_tag and first.model_tag.startswith("churn:")
    assert first.metrics["roc_auc"] > 0.6

    # Every component ran as a kfp.local task and succeeded.
    spec = load_spec(spec_path)
    events = read_events(spec.workdir, first.run_id)
    steps = {e["step"]: e["status"] for e in events}
    assert ALL_STEPS | {"trial-0", "trial-1"} == set(steps)
    assert set(steps.values()) == {"succeeded"}

    # The registry and the run record carry what was promised.
    (model,) = _models("churn")
    assert model.tag == first.model_tag
    assert model.stage == "candidate"
    for key in ("data_fingerprint", "spec_hash", "run_id", "feature_service"):
        assert model.metadata[key], key
    assert model.metadata["run_id"] == first.run_id
    assert model.metadata["feature_service"] == "churn_v1"
    assert "<img" in Path(first.report or "").read_text()
    card = (Path(model.path) / "model_card.md").read_text()
    assert "data issue: ingest: duplicate_rows" in card  # the demo data's dirt is disclosed
    record = RunStore(Path(spec.workdir) / "runs").get(first.run_id)
    assert record.status == "succeeded"
    assert record.data_fingerprint == model.metadata["data_fingerprint"]
    assert set(record.params) >= {"learning_rate"}
    assert record.model_tag == first.model_tag
    assert list(Path(record.artifacts["tensorboard"]).glob("events.out.tfevents.*"))

    # ... and the README's read-back commands show it.
    cli = CliRunner()
    runs = cli.invoke(app, ["runs", "list", "--spec", str(spec_path), "--json"])
    assert runs.exit_code == 0 and first.run_id in runs.output, runs.output
    shown = cli.invoke(app, ["runs", "show", first.run_id, "--spec", str(spec_path), "--json"])
    assert shown.exit_code == 0 and model.metadata["data_fingerprint"] in shown.output
    models = cli.invoke(app, ["models", "list", "--json"])
    assert models.exit_code == 0 and first.model_tag in models.output, models.output
    card = cli.invoke(app, ["models", "show", first.model_tag, "--json"])
    assert card.exit_code == 0 and "candidate" in card.output, card.output

    # The README's serving example: its request body, sent to the variant service class.
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    body = re.search(r"-d '(\{\"rows\".*?)'$", readme, re.M)
    assert body, "README serving example not found"
    monkeypatch.setenv(MODEL_TAG_ENV, first.model_tag)
    variant = ModelVariant()  # as BentoML builds it
    variant.wait_loaded(60)
    served = asyncio.run(variant.predict(json.loads(body[1])["rows"]))
    assert served[0].model == first.model_tag and served[0].prediction in (0, 1)

    # The README's gateway example: stage the model as it says, then both request bodies
    # (raw features; an entity id looked up in the online store) through the gateway class.
    staged = cli.invoke(app, ["models", "stage", "churn:latest", "production"])
    assert staged.exit_code == 0, staged.output
    example = r"3000/predict -H 'content-type: application/json' -d "
    example += r"'(\{\"(?:features|entity_id)\".*?\})'$"
    bodies = re.findall(example, readme, re.M)
    assert len(bodies) == 2, "README gateway examples not found"
    gateway = Gateway.inner(spec, prediction_log=PredictionLog(tmp_path / "prediction_log"))
    try:
        gateway.wait_ready(60)
        for text in bodies:
            answer = asyncio.run(gateway.predict(**json.loads(text)))
            assert isinstance(answer, GatewayPrediction), getattr(answer, "body", answer)
            assert (answer.model, answer.variant) == (first.model_tag, "stable")
    finally:
        gateway.close()

    # Re-running the saved spec is gated against the first model as champion, on the same
    # test rows.
    saved = RunStore(Path(spec.workdir) / "runs").spec_path(first.run_id)
    second = _run(saved)
    assert second.status in ("succeeded", "gate_failed"), second
    assert any(first.model_tag in reason for reason in second.gate_reasons), second.gate_reasons
    assert len(_models("churn")) == (2 if second.status == "succeeded" else 1)


@pytest.mark.parametrize(
    ("dataset", "metric", "floor"),
    [("breast_cancer", "roc_auc", 0.95), ("wine", "accuracy", 0.8), ("diabetes", "r2", 0.2)],
)
def test_public_datasets(tmp_path: Path, dataset: str, metric: str, floor: float) -> None:
    from kubeloop.components.datasets.public import export

    export(dataset, tmp_path)
    spec_path = _edit_spec(
        tmp_path / "kubeloop.yaml", train={"epochs": 40, "patience": 8}, tune={"enabled": False}
    )
    summary = _run(spec_path)
    assert summary.status == "succeeded", summary
    assert summary.metrics[metric] >= floor, summary.metrics
    (model,) = _models(dataset)
    assert model.labels["task"] == {
        "breast_cancer": "binary", "wine": "multiclass", "diabetes": "regression"
    }[dataset]  # fmt: skip


# -- bad input: a clear error, a non-zero exit, and nothing registered ----------------------


@pytest.fixture
def good_project(tmp_path: Path) -> Path:
    """breast_cancer data, with itself as the validation reference."""
    from kubeloop.components.datasets.public import export

    csv, _label = export("breast_cancer", tmp_path)
    (tmp_path / "reference.csv").write_bytes(csv.read_bytes())
    return _edit_spec(
        tmp_path / "kubeloop.yaml",
        validation={"reference": "reference.csv"},
        tune={"enabled": False},
        train={"epochs": 2},
    )


def _break_data(spec_path: Path, how: str) -> None:
    spec = load_spec(spec_path)
    source = Path(spec.data.source)
    df = pd.read_csv(source)
    if how == "missing file":
        source.unlink()
    elif how == "empty file":
        source.write_text("")
    elif how == "wrong label column":
        _edit_spec(spec_path, data={"label": "diagnosis"})
    elif how == "label with one class":
        df["target"] = 1
        df.to_csv(source, index=False)
    elif how == "schema change":
        df.drop(columns=["mean_radius"]).to_csv(source, index=False)
    elif how == "all-null column":
        df["mean_texture"] = None
        df.to_csv(source, index=False)
    elif how == "type change":
        df["mean_area"] = [f"area-{i}" for i in range(len(df))]
        df.to_csv(source, index=False)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing file", "data.source: file not found"),
        ("empty file", "data.source: file is empty"),
        ("wrong label column", "data.label: column 'diagnosis' not in the data"),
        ("label with one class", "single class"),
        ("schema change", "mean_radius"),
        ("all-null column", "mean_texture"),
        ("type change", "mean_area"),
    ],
)
def test_bad_input_stops_the_run_and_registers_nothing(
    good_project: Path, how: str, message: str
) -> None:
    _break_data(good_project, how)
    result = CliRunner().invoke(app, ["pipeline", "run", "--spec", str(good_project)])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()), result.output
    assert _models("breast_cancer") == []
    spec = load_spec(good_project)
    (record,) = RunStore(Path(spec.workdir) / "runs").list()
    assert record.status in ("failed", "blocked")
    assert "register" not in {s["step"] for s in record.steps}
    if how in ("schema change", "all-null column", "type change"):
        assert record.status == "blocked"
        assert Path(record.artifacts["validation_report"]).is_file()


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("train", {"epoch": 3}, "train.epoch: unknown key"),
        ("tune", {"search_space": {"dropout": {"type": "float", "low": 1, "high": 0}}},
         "tune.search_space.dropout"),
    ],
)  # fmt: skip
def test_bad_spec_is_rejected_before_running(
    good_project: Path, section: str, value: dict[str, Any], message: str
) -> None:
    _edit_spec(good_project, **{section: value})
    result = CliRunner().invoke(app, ["pipeline", "run", "--spec", str(good_project)])
    assert result.exit_code == 1
    assert message in result.output
    assert not (good_project.parent / ".kubeloop" / "runs").exists()
    assert _models("breast_cancer") == []
