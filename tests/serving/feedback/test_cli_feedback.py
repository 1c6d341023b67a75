"""`kubeloop feedback import / report` in-process (the README commands), and retraining's
ingest picking up the labelled serving traffic."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from kubeloop.components.core.spec import Spec
from kubeloop.components.ingest.task import run as ingest
from kubeloop.pipelines.cli.main import app
from kubeloop.serving.feedback.labels import read_labels
from kubeloop.serving.gateway import Gateway

pytestmark = pytest.mark.xdist_group("feedback")

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
IMPORT = "kubeloop feedback import --spec kubeloop.yaml labels.csv"
REPORT = "kubeloop feedback report --spec kubeloop.yaml --json"
ROWS = [{"x": x / 10, "plan": "pro"} for x in range(-5, 5)]


def serve_some(spec: Spec, shadow: bool = False) -> list[tuple[str, Any]]:
    """10 rows through a real in-process gateway (prediction log flushed on close)."""
    import asyncio

    from kubeloop.components.register import registry

    g = Gateway.inner(spec)
    g.wait_ready(60)
    if shadow:
        asyncio.run(g.set_canary(registry.get("churn:latest").tag))
    out = asyncio.run(g.predict_batch(rows=ROWS, request_id="b1"))
    g.close()
    return [(p.request_id, p.prediction) for p in out.predictions]


@pytest.fixture
def project(
    make_spec: Callable[..., Spec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Spec:
    spec = make_spec()
    monkeypatch.chdir(tmp_path / "project")
    return spec


def test_readme_shows_the_commands() -> None:
    for command in (IMPORT, REPORT, "localhost:3000/feedback"):
        assert command in README


def test_import_then_report(project: Spec) -> None:
    served = serve_some(project)
    truth = ["yes" if i < 5 else "no" for i in range(10)]
    pd.DataFrame({"request_id": "b1", "row": range(10), "label": truth}).to_csv(
        "labels.csv", index=False
    )
    res = CliRunner().invoke(app, IMPORT.split()[1:])
    assert res.exit_code == 0, res.output
    assert "imported 10 label(s)" in res.output
    assert len(read_labels(project.feedback_dir)) == 10
    res = CliRunner().invoke(app, REPORT.split()[1:])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    (stable,) = out["variants"]
    assert (stable["variant"], stable["labelled"], stable["task"]) == ("stable", 10, "binary")
    expected = sum(p == y for (_, p), y in zip(served, truth, strict=True)) / 10
    assert stable["metrics"]["accuracy"] == pytest.approx(expected)
    assert out["unmatched"] == 0


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"request_id": ["a"], "value": ["yes"]}), "missing column(s) ['label']"),
        (
            pd.DataFrame({"request_id": ["a", "b", "c"], "label": ["yes", "maybe", None]}),
            "column 'label': line 3: expected one of the model's classes",
        ),
        (pd.DataFrame({"request_id": ["a"], "row": [-1], "label": ["yes"]}), "column 'row'"),
    ],
)
def test_bad_files_exit_1_naming_file_and_column_and_write_nothing(
    project: Spec, frame: pd.DataFrame, message: str
) -> None:
    frame.to_csv("labels.csv", index=False)
    res = CliRunner().invoke(app, IMPORT.split()[1:])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "labels.csv" in text and message in text, text
    assert not project.feedback_dir.exists() or read_labels(project.feedback_dir).empty


def test_ingest_appends_labelled_serving_rows(project: Spec, tmp_path: Path) -> None:
    serve_some(project)
    labels = [{"request_id": "b1", "row": i, "label": "yes"} for i in range(4)]
    pd.DataFrame(labels).to_parquet("first.parquet")
    assert CliRunner().invoke(app, [*IMPORT.split()[1:5], "first.parquet"]).exit_code == 0
    pd.DataFrame([{"request_id": "b1", "row": 0, "label": "no"}]).to_parquet("again.parquet")
    assert CliRunner().invoke(app, [*IMPORT.split()[1:5], "again.parquet"]).exit_code == 0
    source = tmp_path / "raw.csv"
    pd.DataFrame(
        {
            "id": [100, 101],
            "ts": ["2024-01-01", "2024-01-02"],
            "x": [0.1, 0.2],
            "plan": ["pro", "basic"],
            "y": ["no", "yes"],
        }
    ).to_csv(source, index=False)
    data = project.data.model_copy(update={"source": str(source)})
    spec = project.model_copy(update={"data": data})
    result = ingest(spec, str(tmp_path / "out.parquet"), str(tmp_path / "audit.json"))
    assert result.feedback_rows == 0  # raw-feature rows have no id for the numeric entity
    assert result.audit["feedback_skipped_entity"] == 4
    # A text entity column takes made-up ids: the 4 labelled rows join, latest label wins.
    pd.read_csv(source).assign(id=["u100", "u101"]).to_csv(source, index=False)
    result = ingest(spec, str(tmp_path / "out.parquet"), str(tmp_path / "audit.json"))
    assert result.feedback_rows == 4 and result.rows_out == 6
    df = pd.read_parquet(tmp_path / "out.parquet")
    fed = df[df["id"].str.startswith("feedback-")].sort_values("id")
    assert fed["y"].tolist() == ["no", "yes", "yes", "yes"]
    assert fed["x"].tolist() == pytest.approx([r["x"] for r in ROWS[:4]])
    off = spec.model_copy(
        update={"retrain": spec.retrain.model_copy(update={"use_feedback": False})}
    )
    assert ingest(off, str(tmp_path / "o2.parquet"), str(tmp_path / "a2.json")).rows_out == 2
    assert os.path.exists(tmp_path / "audit.json")
