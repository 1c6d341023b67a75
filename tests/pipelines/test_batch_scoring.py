"""The batch-scoring pipeline: run for real through kfp.local (`kubeloop pipeline score`),
equal to `kubeloop predict`; bad inputs; submission and schedules; compile."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import load_spec
from kubeloop.pipelines.cli.batch import kfp_cron, submit_scoring
from kubeloop.pipelines.cli.main import app
from tests.pipelines.golden import GOLDEN_BATCH_IR, comparable

pytestmark = pytest.mark.xdist_group("batch_scoring")
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private model store with a tiny `churn` model in production, a spec and inputs."""
    from kubeloop.components.register import registry
    from tests.tiny_model import rows, train_and_register

    root = tmp_path_factory.mktemp("batch")
    with pytest.MonkeyPatch.context() as mp:
        # kfp.local's task subprocesses inherit the variable.
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        tag = train_and_register(root)
        registry.set_stage(tag, "production")
        spec = root / "kubeloop.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "churn",
                    "workdir": str(root / "wd"),
                    "data": {"source": "raw.csv", "label": "y", "entity": "id"},
                }
            )
        )
        inputs = rows(120, seed=7).drop(columns=["y"])
        csv = root / "in.csv"
        inputs.to_csv(csv, index=False)
        yield {"root": root, "tag": tag, "spec": spec, "csv": csv}


def _leftovers(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_pipeline_scores_like_kubeloop_predict(project: dict[str, Any], tmp_path: Path) -> None:
    """Default model = the spec's production model; same rows, columns and values as the
    `kubeloop predict` command on the same input."""
    out = tmp_path / "scores.parquet"
    got = runner.invoke(
        app,
        [
            "pipeline", "score", "--spec", str(project["spec"]), "--input", str(project["csv"]),
            "--output", str(out), "--chunk-rows", "50", "--json",
        ],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    result = json.loads(got.stdout)
    assert result["model_tag"] == project["tag"]
    assert (result["rows"], result["chunks"]) == (120, 3)

    expected = tmp_path / "predict.parquet"
    ref = runner.invoke(
        app,
        ["predict", "--model", "churn:production", "--input", str(project["csv"]),
         "--output", str(expected)],
    )  # fmt: skip
    assert ref.exit_code == 0, ref.output
    scored = pd.read_parquet(out)
    pd.testing.assert_frame_equal(scored, pd.read_parquet(expected))
    assert {"prediction", "probability_yes", "model"} <= set(scored.columns)


def test_pipeline_with_an_explicit_tag_writes_csv_like_predict(
    project: dict[str, Any], tmp_path: Path
) -> None:
    out, expected = tmp_path / "scores.csv", tmp_path / "predict.csv"
    args = ["--input", str(project["csv"]), "--output"]
    got = runner.invoke(
        app,
        ["pipeline", "score", "--spec", str(project["spec"]), "--model", project["tag"],
         *args, str(out)],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    assert f"scored 120 rows in 1 chunk(s) with {project['tag']}" in got.stdout
    ref = runner.invoke(app, ["predict", "--model", project["tag"], *args, str(expected)])
    assert ref.exit_code == 0, ref.output
    assert out.read_text() == expected.read_text()


def _score(project: dict[str, Any], *args: str) -> Any:
    return runner.invoke(app, ["pipeline", "score", "--spec", str(project["spec"]), *args])


def test_missing_input_exits_1_and_writes_nothing(project: dict[str, Any], tmp_path: Path) -> None:
    got = _score(
        project, "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o.csv")
    )
    assert got.exit_code == 1
    assert "--input" in got.stderr and "nope.csv" in got.stderr
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("churn:doesnotexist", "model 'churn:doesnotexist' not found"),
        ("candidate", "no model 'churn' in stage 'candidate'"),
    ],
)
def test_unknown_model_exits_1_and_writes_nothing(
    project: dict[str, Any], tmp_path: Path, model: str, message: str
) -> None:
    out = tmp_path / "out" / "o.parquet"
    got = _score(project, "--model", model, "--input", str(project["csv"]), "--output", str(out))
    assert got.exit_code == 1
    assert message in got.stderr
    assert _leftovers(tmp_path) == []


def test_failure_inside_the_task_is_reported_and_leaves_no_output(
    project: dict[str, Any], tmp_path: Path
) -> None:
    """Input that passes the up-front checks but cannot be scored (a feature column is
    missing): the task's own error comes back, and nothing is written."""
    bad = tmp_path / "in" / "bad.csv"
    bad.parent.mkdir()
    pd.read_csv(project["csv"]).drop(columns=["plan"]).to_csv(bad, index=False)
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    got = _score(project, "--input", str(bad), "--output", str(out))
    assert got.exit_code == 1
    assert "batch scoring failed: DataError" in got.stderr and "plan" in got.stderr
    assert "pipeline.log" in got.stderr
    assert _leftovers(out.parent) == []


def test_schedule_needs_a_host(project: dict[str, Any], tmp_path: Path) -> None:
    got = _score(project, "--input", "in.csv", "--output", "o.csv", "--schedule", "0 2 * * *")
    assert got.exit_code == 1
    assert "--schedule needs --host" in got.stderr


class RecordingClient:
    """Stands in for kfp.Client (no Kubeflow Pipelines server can run here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_run_from_pipeline_func(self, pipeline_func: Any, **kwargs: Any) -> Any:
        self.calls.append(("run", {"pipeline": pipeline_func, **kwargs}))
        return type("Result", (), {"run_id": "run-123"})()

    def create_experiment(self, name: str, **kwargs: Any) -> Any:
        self.calls.append(("experiment", {"name": name, **kwargs}))
        return type("Experiment", (), {"experiment_id": "exp-1"})()

    def create_recurring_run(self, experiment_id: str, job_name: str, **kwargs: Any) -> Any:
        ir = yaml.safe_load_all(Path(kwargs["pipeline_package_path"]).read_text())
        kwargs["ir"] = next(iter(ir))
        self.calls.append(
            ("recurring", {"experiment_id": experiment_id, "name": job_name, **kwargs})
        )
        return type("Job", (), {"recurring_run_id": "job-9"})()


ARGS = {"model": "production", "input_path": "/data/in.parquet", "output_path": "/data/o.parquet"}


def test_submit_once(project: dict[str, Any]) -> None:
    spec = load_spec(project["spec"], resolve=False)
    client = RecordingClient()
    assert submit_scoring(spec, "http://kfp", ARGS, "score-1", client=client) == "run-123"
    [(kind, call)] = client.calls
    assert kind == "run"
    assert call["arguments"] == {**ARGS, "spec_json": spec.model_dump_json()}
    assert call["run_name"] == "score-1" and call["experiment_name"] == "churn"
    assert call["enable_caching"] is False


def test_submit_on_a_schedule_creates_a_recurring_run(project: dict[str, Any]) -> None:
    spec = load_spec(project["spec"], resolve=False)
    client = RecordingClient()
    job = submit_scoring(spec, "http://kfp", ARGS, "nightly", schedule="0 2 * * *", client=client)
    assert job == "job-9"
    assert [k for k, _ in client.calls] == ["experiment", "recurring"]
    call = client.calls[1][1]
    assert call["experiment_id"] == "exp-1" and call["name"] == "nightly"
    assert call["cron_expression"] == "0 0 2 * * *"  # KFP's cron has seconds first
    assert call["params"] == {**ARGS, "spec_json": spec.model_dump_json()}
    assert call["ir"]["pipelineInfo"]["name"] == "kubeloop-batch-scoring"
    assert call["max_concurrency"] == 1 and call["enable_caching"] is False


def test_cron_schedules() -> None:
    assert kfp_cron("*/15 * * * 1-5") == "0 */15 * * * 1-5"
    assert kfp_cron("30 0 9 ? * 2-6") == "30 0 9 ? * 2-6"
    for bad in ("", "0 2 * *", "0 2 * * * * *", "0 2 * * ; rm"):
        with pytest.raises(KubeloopError, match="expected a cron schedule of 5 fields"):
            kfp_cron(bad)
    client = RecordingClient()
    spec = load_spec(Path(GOLDEN_BATCH_IR).parent / "kubeloop.yaml", resolve=False)
    with pytest.raises(KubeloopError, match="--schedule"):
        submit_scoring(spec, "http://kfp", ARGS, "x", schedule="daily", client=client)
    assert client.calls == []  # nothing created for a bad schedule


def test_compile_command_emits_the_batch_scoring_pipeline(tmp_path: Path) -> None:
    spec = GOLDEN_BATCH_IR.parent / "kubeloop.yaml"
    out = tmp_path / "batch.yaml"
    got = runner.invoke(
        app, ["pipeline", "compile", "--spec", str(spec), "--pipeline", "batch-scoring",
              "--out", str(out)],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    assert comparable(out) == comparable(GOLDEN_BATCH_IR)
    assert _leftovers(tmp_path) == [out]
    training = tmp_path / "training.yaml"  # the default stays the training pipeline
    got = runner.invoke(app, ["pipeline", "compile", "--spec", str(spec), "--out", str(training)])
    assert got.exit_code == 0, got.output
    assert "name: kubeloop-training" in training.read_text()


def test_batch_scoring_ir_runs_from_the_platform_image_without_pip() -> None:
    from kubeloop.components.core.image import PLATFORM_IMAGE

    doc = next(iter(yaml.safe_load_all(GOLDEN_BATCH_IR.read_text())))
    [(name, ex)] = doc["deploymentSpec"]["executors"].items()
    assert name == "exec-batch-score"
    assert ex["container"]["image"] == PLATFORM_IMAGE
    assert "pip install" not in " ".join(ex["container"]["command"])
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["model"]["defaultValue"] == "production"
    assert "defaultValue" not in params["input_path"]


def test_compiling_the_batch_pipeline_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from kubeloop.pipelines.batch_scoring import build_batch_scoring_pipeline\n"
        "heavy = {'torch', 'pandas', 'feast', 'bentoml', 'pyarrow', 'sklearn'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
