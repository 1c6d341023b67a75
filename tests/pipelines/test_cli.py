"""The CLI in-process (CliRunner): init, compile, --help, error exits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.components.core.spec import load_spec
from kubeloop.pipelines.cli.main import app

runner = CliRunner()


def test_help_lists_sub_apps() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for sub in ("init", "data", "pipeline", "models", "runs"):
        assert sub in result.output


def test_init_writes_a_valid_commented_spec(tmp_path: Path) -> None:
    out = tmp_path / "kubeloop.yaml"
    result = runner.invoke(
        app, ["init", "--out", str(out), "--source", "iris.csv", "--label", "species"]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.count("#") > 20  # commented
    spec = load_spec(out)
    assert spec.data.label == "species"
    assert spec.data.source == str(tmp_path / "iris.csv")
    assert set(yaml.safe_load(text)) >= {
        "data",
        "validation",
        "features",
        "train",
        "tune",
        "evaluate",
        "serve",
        "monitor",
        "retrain",
    }
    again = runner.invoke(app, ["init", "--out", str(out)])
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_compile_writes_ir(tmp_path: Path) -> None:
    spec = tmp_path / "kubeloop.yaml"
    spec.write_text(yaml.safe_dump({"name": "p", "data": {"source": "x.csv", "label": "y"}}))
    out = tmp_path / "ir.yaml"
    result = runner.invoke(app, ["pipeline", "compile", "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ir = yaml.safe_load_all(out.read_text())
    assert next(ir)["pipelineInfo"]["name"] == "kubeloop-training"


def test_unknown_spec_key_exits_non_zero_with_path(tmp_path: Path) -> None:
    spec = tmp_path / "kubeloop.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "p", "data": {"source": "x.csv", "label": "y"}, "trian": {}})
    )
    result = runner.invoke(app, ["pipeline", "compile", "--spec", str(spec)])
    assert result.exit_code == 1
    assert "trian: unknown key" in result.output


def test_data_demo_writes_data_drift_period_and_spec(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["data", "demo", "--rows", "500", "--out", str(out), "--drift"])
    assert result.exit_code == 0, result.output
    for name in ("churn.csv", "churn_drift.csv", "kubeloop.yaml"):
        assert (out / name).is_file(), name
    spec = load_spec(out / "kubeloop.yaml")
    assert spec.data.label == "churned"
    assert spec.data.entity == "customer_id"


def test_data_public_exports_a_bundled_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "public", "wine", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "label column: target" in result.output
    assert (tmp_path / "wine.csv").is_file()
    unknown = runner.invoke(app, ["data", "public", "titanic", "--out", str(tmp_path)])
    assert unknown.exit_code == 1
    assert "titanic" in unknown.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert "kubeloop 0.1.0" in result.output


def test_run_with_host_submits_instead_of_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Kubeflow Pipelines API server can run here: the kfp client is the one fake."""
    import kfp

    submitted: dict[str, object] = {}

    class FakeClient:
        def __init__(self, host: str) -> None:
            submitted["host"] = host

        def create_run_from_pipeline_func(self, pipeline_func: object, **kwargs: object) -> object:
            submitted.update(kwargs)
            return type("Run", (), {"run_id": "kfp-run-7"})()

    monkeypatch.setattr(kfp, "Client", FakeClient)
    spec = tmp_path / "kubeloop.yaml"
    spec.write_text(yaml.safe_dump({"name": "p", "data": {"source": "s3://b/x.csv", "label": "y"}}))
    result = runner.invoke(
        app, ["pipeline", "run", "--spec", str(spec), "--host", "https://kfp.example.com"]
    )
    assert result.exit_code == 0, result.output
    assert "submitted run kfp-run-7" in result.output
    assert submitted["host"] == "https://kfp.example.com"
    assert submitted["experiment_name"] == "p"
    assert not (tmp_path / ".kubeloop").exists()  # nothing ran locally


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "kubeloop.yaml"
    spec.write_text(yaml.safe_dump({"name": "p", "data": {"source": "x.csv", "label": "y"}}))
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "ir.yaml"
    result = runner.invoke(app, ["pipeline", "compile", "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 1
    assert "error:" in result.output and "file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
