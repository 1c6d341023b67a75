"""The trigger with the REAL pipeline runner behind a real Alertmanager: a drift alert starts
`kubeloop pipeline run` (kfp.local) on breast_cancer; the registered model's tag goes to the
canary starter. A second alert retrains on the same data and seeds: the identical
model ties with the champion, the gate refuses it, nothing is deployed and the decision
record says why. Then `kubeloop trigger status` shows both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubeloop.components.core.spec import load_spec
from kubeloop.components.register import registry
from kubeloop.components.tracking.store import RunStore
from kubeloop.pipelines.cli.main import app
from kubeloop.serving.monitoring.config import Timings, write_local_configs
from kubeloop.serving.trigger.app import create_app
from kubeloop.serving.trigger.runners import LocalPipelineRunner
from kubeloop.serving.trigger.trigger import RetrainTrigger
from tests.alertmanager import AlertmanagerServer, UvicornThread, free_port, wait_for
from tests.trigger_fakes import RecordingRollout

pytestmark = pytest.mark.xdist_group("trigger-pipeline")
RUN_WAIT_S = 600.0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """breast_cancer with a short training, no tuning, no cooldown; a private model store
    (the pipeline's child processes inherit the variable)."""
    from kubeloop.components.datasets.public import export

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    export("breast_cancer", tmp_path)
    spec_path = tmp_path / "kubeloop.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["train"] = {**raw.get("train", {}), "epochs": 3}
    raw["tune"] = {**raw.get("tune", {}), "enabled": False}
    raw["retrain"] = {"cooldown_s": 0, "daily_budget": 3}
    spec_path.write_text(yaml.safe_dump(raw))
    yield spec_path


def _alert(name: str) -> dict[str, object]:
    return {"labels": {"alertname": name, "action": "retrain", "model": "breast_cancer:v1"}}


def test_real_retraining_gates_then_starts_a_canary_or_keeps_the_model(
    project: Path, tmp_path: Path
) -> None:
    spec = load_spec(project)
    port = free_port()
    configs = write_local_configs(
        tmp_path / "monitoring",
        targets={"trigger": [f"127.0.0.1:{port}"]},
        trigger_url=f"http://127.0.0.1:{port}/alerts",
        timings=Timings(group_wait_s=0.5, group_interval_s=1.0, repeat_interval_s=5.0),
    )
    rollout = RecordingRollout()
    trigger = RetrainTrigger(spec, LocalPipelineRunner(project), rollout=rollout)
    with (
        AlertmanagerServer(tmp_path / "am", configs.alertmanager) as am,
        UvicornThread(create_app(trigger), port),
    ):
        am.post_alerts([_alert("ModelDriftDetected")])
        wait_for(lambda: len(trigger.state.requests) == 1, 60, "the first request")
        assert trigger.wait_idle(RUN_WAIT_S)

        (first,) = trigger.state.requests
        assert first.outcome == "canary_started", first
        (candidate,) = rollout.calls
        model = registry.get(candidate)
        assert model.metadata["run_id"] == first.run_id  # the run registered what rolled out
        record = RunStore.for_spec(spec).get(str(first.run_id))
        assert record.status == "succeeded" and record.gate and record.gate["passed"] is True

        # Another alert (no cooldown is configured): a second run on the same data.
        am.post_alerts([_alert("PredictionDriftDetected")])
        wait_for(lambda: len(trigger.state.requests) == 2, 60, "the second request")
        assert trigger.wait_idle(RUN_WAIT_S)

    second = trigger.state.requests[1]
    assert second.outcome == "gate_failed", second
    assert rollout.calls == [candidate]  # nothing new deployed
    assert [m.tag for m in registry.list_models(spec.name)] == [candidate]  # nor registered
    decision = json.loads(Path(str(second.decision)).read_text())
    assert decision["action"] == "none"
    assert decision["gate_reasons"], decision  # the gate's own words: why it refused
    assert "current model keeps serving" in decision["reason"]
    assert (
        trigger.registry.get_sample_value("kubeloop_retrain_runs_total", {"outcome": "gate_failed"})
        == 1
    )
    # ModelStale's input: the trigger exports the registered model's training time.
    assert trigger.registry.get_sample_value(
        "kubeloop_model_created_timestamp_seconds", {"model": candidate, "stage": "candidate"}
    ) == pytest.approx(model.created_at.timestamp())

    shown = CliRunner().invoke(app, ["trigger", "status", "--spec", str(project), "--json"])
    assert shown.exit_code == 0, shown.output
    outcomes = [r["outcome"] for r in json.loads(shown.output)["requests"]]
    assert outcomes == ["canary_started", "gate_failed"]
