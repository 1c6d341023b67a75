"""The pipeline runners' bookkeeping without running a pipeline: reading a finished run's
record, waiting for a run that outlived its trigger, and the KFP runner against a fake
client (no Kubeflow Pipelines can run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from kubeloop.components.core.spec import load_spec
from kubeloop.components.tracking.store import RunStore
from kubeloop.serving.trigger.runners import (
    KfpPipelineRunner,
    LocalPipelineRunner,
    process_start_time,
)


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "kubeloop.yaml"
    path.write_text(
        yaml.safe_dump({"name": "churn", "data": {"source": "churn.csv", "label": "churned"}})
    )
    return path


def _finished_record(spec_path: Path, run_id: str, **fields: Any) -> None:
    spec = load_spec(spec_path)
    store = RunStore.for_spec(spec)
    store.start(run_id, spec)
    store.update(run_id, **fields)


def test_local_runner_command_is_kubeloop_pipeline_run(spec_path: Path) -> None:
    cmd = LocalPipelineRunner(spec_path).command("churn-1")
    assert cmd[0] == sys.executable
    assert cmd[3:] == ["pipeline", "run", "--spec", str(spec_path), "--run-id", "churn-1", "--json"]


def test_recover_reads_a_finished_record_and_not_a_running_one(spec_path: Path) -> None:
    runner = LocalPipelineRunner(spec_path)
    assert runner.recover("churn-none") is None  # never started
    _finished_record(spec_path, "churn-running")
    assert runner.recover("churn-running") is None  # started, never finished: run again
    _finished_record(
        spec_path,
        "churn-done",
        status="gate_failed",
        gate={"passed": False, "reasons": ["roc_auc 0.6 < 0.7"]},
        metrics={"roc_auc": 0.6},
        primary_metric="roc_auc",
    )
    got = runner.recover("churn-done")
    assert got is not None
    assert (got.status, got.gate_passed, got.gate_reasons) == (
        "gate_failed",
        False,
        ["roc_auc 0.6 < 0.7"],
    )


def test_recover_waits_for_a_run_that_outlived_its_trigger(spec_path: Path) -> None:
    run_id = "churn-orphan"
    _finished_record(spec_path, run_id)
    spec = load_spec(spec_path)
    # Stands in for the orphaned `kubeloop pipeline run`: it finishes the record on its way
    # out; the pid file names it by pid and start time, as the runner writes it.
    finish = (
        "import sys, time; time.sleep(1);"
        "from kubeloop.components.tracking.store import RunStore;"
        f"RunStore({str(Path(spec.workdir) / 'runs')!r}).update("
        f"{run_id!r}, status='succeeded', model_tag='churn:v9', gate={{'passed': True}})"
    )
    proc = subprocess.Popen([sys.executable, "-c", finish, run_id])
    logs = Path(spec.workdir) / "trigger" / "runs"
    logs.mkdir(parents=True)
    (logs / f"{run_id}.pid").write_text(f"{proc.pid} {process_start_time(proc.pid)}")
    try:
        got = LocalPipelineRunner(spec_path, poll_s=0.05).recover(run_id)
        assert proc.poll() is not None  # it waited for the process to end
        assert got is not None and got.model_tag == "churn:v9" and got.gate_passed is True
    finally:
        proc.kill()
        proc.wait()
    # A pid now taken by another process (another start time) is not waited for.
    (logs / f"{run_id}.pid").write_text(f"{os.getpid()} 1")
    assert LocalPipelineRunner(spec_path).recover(run_id) is not None


class FakeKfp:
    """What a Kubeflow Pipelines client answers; records what it was asked."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.created: list[dict[str, Any]] = []
        self.waited: list[str] = []

    def create_run_from_pipeline_func(self, pipeline_func: Any, **kwargs: Any) -> Any:
        self.created.append(kwargs)
        return SimpleNamespace(run_id=f"kfp-{len(self.created)}")

    def wait_for_run_completion(self, run_id: str, timeout: int) -> Any:
        self.waited.append(run_id)
        return SimpleNamespace(state=self.state)


@pytest.mark.parametrize(("state", "status"), [("SUCCEEDED", "gate_failed"), ("FAILED", "failed")])
def test_kfp_runner_submits_waits_and_reads_the_verdict(
    spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, status: str
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # nothing registered
    client = FakeKfp(state)
    spec = load_spec(spec_path)
    got = KfpPipelineRunner(spec, "https://kfp.example", client=client).run("churn-k1")
    (created,) = client.created
    assert created["run_name"] == "churn-k1"
    assert created["arguments"]["run_id"] == "churn-k1"
    assert client.waited == ["kfp-1"]
    assert got.status == status
    if status == "gate_failed":
        assert "registered no model" in got.gate_reasons[0]
    else:
        assert "ended FAILED" in str(got.error)
    # A new runner (a restarted trigger) finds the KFP run by the id it saved.
    again = KfpPipelineRunner(spec, "https://kfp.example", client=client).recover("churn-k1")
    assert again is not None and again.status == status
    assert client.waited == ["kfp-1", "kfp-1"] and len(client.created) == 1
