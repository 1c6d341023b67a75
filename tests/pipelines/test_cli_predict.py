"""`kubeloop predict` in-process: the README commands, progress and summary, error exits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from kubeloop.components.register import registry
from kubeloop.pipelines.cli.main import app
from tests.components.test_predict import bad_inputs
from tests.tiny_model import rows, train_and_register

runner = CliRunner()

# The exact commands the README shows under "Batch scoring".
README_COMMANDS = [
    "kubeloop predict --model churn:latest --input new_customers.csv --output scores.parquet",
    "kubeloop predict --model production --name churn --input new_customers.csv "
    "--output scores.csv --chunk-rows 20000",
]


@pytest.fixture(scope="module")
def tag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cli_predict_model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        yield train_and_register(tmp)


@pytest.fixture()
def data() -> pd.DataFrame:
    return rows(50_000, seed=3).drop(columns="y")


def test_readme_commands_are_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for command in README_COMMANDS:
        assert command in readme, command


@pytest.mark.slow
def test_readme_commands_score_the_file(
    tag: str, data: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data.to_csv("new_customers.csv", index=False)
    registry.set_stage(tag, "production")

    first = runner.invoke(app, README_COMMANDS[0].split()[1:])
    assert first.exit_code == 0, first.output
    assert "chunk 1: 50,000 rows scored (50,000 so far)" in first.output
    assert f"scored 50,000 rows in 1 chunk(s) with {tag}" in first.output
    assert "rows/s" in first.output and "scores.parquet" in first.output
    parquet = pd.read_parquet("scores.parquet")

    second = runner.invoke(app, README_COMMANDS[1].split()[1:])
    assert second.exit_code == 0, second.output
    for k in (1, 2):
        assert f"chunk {k}: 20,000 rows scored ({20_000 * k:,} so far)" in second.output
    assert "chunk 3: 10,000 rows scored (50,000 so far)" in second.output
    assert f"scored 50,000 rows in 3 chunk(s) with {tag}" in second.output
    csv = pd.read_csv("scores.csv")
    assert len(csv) == len(parquet) == 50_000
    assert (csv["prediction"] == parquet["prediction"]).all()
    assert (csv["model"] == tag).all()


@pytest.mark.slow
def test_json_summary(tag: str, data: pd.DataFrame, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    data.iloc[:1000].to_parquet(src, index=False)
    out = tmp_path / "s.parquet"
    result = runner.invoke(
        app,
        ["predict", "-m", tag, "-i", str(src), "-o", str(out), "--chunk-rows", "400", "--json"],
    )
    assert result.exit_code == 0, result.output
    # progress goes to stderr; stdout is the JSON alone
    summary = json.loads(result.stdout)
    assert summary["rows"] == 1000 and summary["chunks"] == 3
    assert summary["model_tag"] == tag and summary["rows_per_second"] > 0
    assert "chunk 3: 200 rows scored (1,000 of 1,000 so far)" in result.stderr


@pytest.mark.slow
def test_bad_inputs_exit_1_with_a_clear_message_and_no_output(
    tag: str, data: pd.DataFrame, tmp_path: Path
) -> None:
    cases = bad_inputs(tmp_path, data.iloc[:500])
    defaults = cases.pop("__good__")[0]
    flags = {
        "tag": "--model",
        "input_path": "--input",
        "output_path": "--output",
        "name": "--name",
        "chunk_rows": "--chunk-rows",
    }
    for case, (override, phrase) in cases.items():
        args = {"tag": tag, **defaults, **override}
        argv = ["predict"]
        for key, value in args.items():
            argv += [flags[key], str(value)]
        before = sorted(p.name for p in tmp_path.iterdir())
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, (case, result.output)
        assert "error:" in result.output and phrase in result.output, (case, result.output)
        assert "Traceback" not in result.output, case
        assert sorted(p.name for p in tmp_path.iterdir()) == before, case


def test_help_lists_predict() -> None:
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    for flag in ("--model", "--input", "--output", "--name", "--chunk-rows"):
        assert flag in result.output
