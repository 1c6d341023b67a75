"""Run records: round trip, prefix lookup, saved spec, summary folding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import load_spec, parse_spec
from kubeloop.components.tracking.store import RunStore


@pytest.fixture()
def spec(tmp_path: Path) -> Any:
    return parse_spec(
        {
            "name": "churn",
            "workdir": str(tmp_path / "wd"),
            "data": {"source": str(tmp_path / "raw.csv"), "label": "y"},
            "train": {"epochs": 3, "seed": 7},
        }
    )


def test_round_trip(spec: Any) -> None:
    store = RunStore.for_spec(spec)
    rec = store.start("20240101-000000-aaaa", spec)
    assert rec.status == "running" and rec.finished_at is None
    assert rec.spec_hash == spec.spec_hash() and rec.spec["train"]["epochs"] == 3
    assert rec.seeds["train"] == 7
    assert rec.code_version["version"]
    store.update(rec.run_id, data_fingerprint="fp", params={"lr": 0.01}, artifacts={"model": "/m"})
    store.update(
        rec.run_id,
        params={"dropout": 0.1},
        artifacts={"report": "/r.html"},
        metrics={"roc_auc": 0.8},
        primary_metric="roc_auc",
        model_tag="churn:v1",
    )
    done = store.finish(rec.run_id, "succeeded")
    again = store.get(rec.run_id)
    assert again == done
    assert again.params == {"lr": 0.01, "dropout": 0.1}  # merged
    assert again.artifacts == {"model": "/m", "report": "/r.html"}
    assert again.primary_value == 0.8 and again.duration_s is not None
    run_json = Path(spec.workdir) / "runs" / rec.run_id / "run.json"
    assert run_json.is_file()
    assert not [p for p in run_json.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(KubeloopError, match="unknown run record field"):
        store.update(rec.run_id, colour="red")
    with pytest.raises(KubeloopError, match="already exists"):
        store.start(rec.run_id, spec)


def test_list_newest_first_and_prefix_lookup(spec: Any) -> None:
    store = RunStore.for_spec(spec)
    assert store.list() == []
    store.start("20240101-000000-aaaa", spec)
    store.start("20240102-000000-bbbb", spec)
    store.finish("20240101-000000-aaaa", "failed", error="boom")
    assert [r.run_id for r in store.list()] == ["20240102-000000-bbbb", "20240101-000000-aaaa"]
    assert store.get("20240101").error == "boom"
    with pytest.raises(KubeloopError, match="ambiguous"):
        store.get("2024010")
    with pytest.raises(KubeloopError, match="kubeloop runs list"):
        store.get("nope")


def test_saved_spec_reloads_identically(spec: Any) -> None:
    store = RunStore.for_spec(spec)
    store.start("r1", spec)
    path = store.spec_path("r1")
    assert path.name == "spec.yaml"
    assert load_spec(path).spec_hash() == spec.spec_hash()


def test_record_summary_folds_step_events(spec: Any) -> None:
    store = RunStore.for_spec(spec)
    store.start("r1", spec)
    events = [
        {
            "step": "ingest",
            "start": 1.0,
            "end": 2.5,
            "status": "succeeded",
            "fields": {"data_fingerprint": "fp9"},
        },
        {
            "step": "select-best",
            "start": 3.0,
            "end": 3.1,
            "status": "succeeded",
            "fields": {"tuned_params": {"learning_rate": 0.003}},
        },
        {
            "step": "train",
            "start": 4.0,
            "end": 9.0,
            "status": "succeeded",
            "fields": {"artifacts": {"model": "/pr/model"}},
        },
    ]
    summary = {
        "run_id": "r1",
        "status": "gate_failed",
        "gate_passed": False,
        "gate_reasons": ["FAILED: roc_auc 0.6 < minimum 0.7"],
        "metrics": {"roc_auc": 0.6},
        "primary_metric": "roc_auc",
        "report": "/pr/report.html",
        "log": "/wd/pipeline.log",
        "model_tag": None,
    }
    rec = store.record_summary("r1", summary, events)
    assert rec.status == "gate_failed" and rec.finished_at is not None
    assert rec.data_fingerprint == "fp9" and rec.params == {"learning_rate": 0.003}
    assert rec.gate == {"passed": False, "reasons": ["FAILED: roc_auc 0.6 < minimum 0.7"]}
    assert rec.artifacts["model"] == "/pr/model" and rec.artifacts["report"] == "/pr/report.html"
    assert [s["step"] for s in rec.steps] == ["ingest", "select-best", "train"]
    assert rec.steps[0]["seconds"] == 1.5
    failed = store.record_summary(
        "r1", {"status": "failed", "failed_step": "train", "error": "OOM"}, []
    )
    assert failed.error == "train: OOM"
