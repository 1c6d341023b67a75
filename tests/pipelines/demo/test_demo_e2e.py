"""The closed loop end to end, as `kubeloop demo` runs it: real Prometheus and Alertmanager
(Debian packages), the gateway, the retrain trigger and the rollout controller as separate
processes on 127.0.0.1, kfp.local pipeline runs. After the drift onset nothing is done by
hand: drift → alert → exactly one retraining run (on labelled serving traffic) → gate →
canary → promoted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeloop.components.core.spec import load_spec
from kubeloop.components.tracking.store import RunStore
from kubeloop.serving.rollout.state import StateStore as RolloutStore
from kubeloop.serving.trigger.state import StateStore as TriggerStore
from tests.prom import free_port

pytestmark = pytest.mark.xdist_group("demo")
DEMO_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("demo")
    ports = [str(free_port()) for _ in range(4)]
    cmd = [
        sys.executable, "-c", "from kubeloop.pipelines.cli.main import app; app()",
        "demo", "--out", str(folder), "--rows", "6000", "--steady", "30", "--json",
        "--gateway-port", ports[0], "--prometheus-port", ports[1],
        "--alertmanager-port", ports[2], "--trigger-port", ports[3],
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_HOME", "KUBELOOP_ADMIN_TOKEN")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, env=env)
    assert done.returncode == 0, f"kubeloop demo exited {done.returncode}:\n{done.stderr[-4000:]}"
    return folder, json.loads(done.stdout)


def test_drift_to_promotion_without_a_manual_step(demo: tuple[Path, dict[str, Any]]) -> None:
    folder, result = demo
    assert result["outcome"] == "promoted"
    assert result["production"] != result["first_model"]
    events = [e["what"] for e in result["events"]]

    def at(prefix: str) -> int:
        found = [i for i, what in enumerate(events) if what.startswith(prefix)]
        assert found, f"no timeline event {prefix!r} in {events}"
        return found[0]

    order = [
        "drift onset",
        "alert ModelDriftDetected firing",
        "trigger accepted",
        "retraining run",
        "evaluation gate passed",
        "canary rollout",
        "canary promoted",
    ]
    assert [at(p) for p in order] == sorted(at(p) for p in order), events
    assert 0 < result["seconds_to_promotion"] < DEMO_TIMEOUT_S
    assert json.loads((folder / "timeline.json").read_text())["outcome"] == "promoted"
    # The replayed rows are all well-formed: no request failed, every label was taken.
    traffic = result["traffic"]
    assert traffic["failed"] == 0 and traffic["labels_failed"] == 0, traffic
    assert traffic["labels_posted"] > 0


def test_one_retraining_on_labelled_traffic_then_one_promotion(
    demo: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, result = demo
    monkeypatch.setenv("BENTOML_HOME", str(folder / "bentoml"))
    spec = load_spec(folder / "loop.yaml")
    requests = TriggerStore(Path(spec.workdir) / "trigger").load().requests
    assert len(requests) == 1, [r.id for r in requests]
    request = requests[0]
    assert request.outcome == "canary_started"
    assert "ModelDriftDetected" in {a.name for a in request.alerts}
    runs = RunStore.for_spec(spec).list()
    assert len(runs) == 2  # the first model's run and the one retraining
    retrain = next(r for r in runs if r.run_id == request.run_id)
    assert retrain.status == "succeeded" and retrain.model_tag == result["production"]
    # kfp.local's layout: <pipeline root>/<pipeline run>/<task>/<output>.
    task_outputs = Path(retrain.artifacts["model"]).parents[1]
    audit = json.loads((task_outputs / "ingest" / "audit").read_text())
    assert audit["feedback_rows"] > 0, audit
    rollout = RolloutStore(spec.rollouts_dir).load()
    assert rollout is not None and rollout.phase == "promoted"
    assert rollout.canary == result["production"]
    decision = json.loads(Path(rollout.decision_file or "").read_text())
    assert decision["outcome"] == "promoted" and decision["trigger"] == "analysis"
    checks = {c["name"]: c for a in decision["analyses"] for c in a["checks"]}
    # The canary was judged on ground truth too: labels reached the analysis.
    assert checks["live_quality_delta"]["value"] is not None, checks


def test_the_readme_read_back_commands_show_the_promotion(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    """After the demo: `BENTOML_HOME=<demo>/bentoml kubeloop models list` and
    `kubeloop rollout history --spec <demo>/loop.yaml`, as the README says."""
    folder, result = demo
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    assert "BENTOML_HOME=.kubeloop-demo/bentoml kubeloop models list" in readme
    assert "kubeloop rollout history --spec .kubeloop-demo/loop.yaml" in readme
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml")}
    kubeloop = [sys.executable, "-c", "from kubeloop.pipelines.cli.main import app; app()"]

    def run(*args: str) -> Any:
        done = subprocess.run([*kubeloop, *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    models = {m["tag"]: m["stage"] for m in run("models", "list", "--json")}
    assert models[result["production"]] == "production"
    assert models[result["first_model"]] != "production"
    history = run("rollout", "history", "--spec", str(folder / "loop.yaml"), "--json")
    assert [d["outcome"] for d in history] == ["promoted"]
