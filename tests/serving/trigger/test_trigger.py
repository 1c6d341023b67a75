"""RetrainTrigger's policy and worker with a recording pipeline runner: dedupe, cooldown,
daily budget, the gate's verdict, decision records, metrics, and restarts that lose and
repeat nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.trigger.runners import RunResult
from kubeloop.serving.trigger.state import DAY_S, StateStore
from kubeloop.serving.trigger.trigger import MAX_ATTEMPTS, RetrainTrigger
from tests.trigger_fakes import (
    Clock,
    RecordingRollout,
    RecordingRunner,
    alert,
    make_spec,
    webhook,
)

WAIT_S = 30.0


class Harness:
    def __init__(self, workdir: Path, **retrain: float | bool) -> None:
        self.spec = make_spec(workdir, **retrain)
        self.clock = Clock()
        self.runner = RecordingRunner()
        self.rollout = RecordingRollout()
        self.triggers: list[RetrainTrigger] = []

    def trigger(self, *, start: bool = True) -> RetrainTrigger:
        t = RetrainTrigger(
            self.spec,
            self.runner,
            rollout=self.rollout,
            clock=self.clock,
            model_age=False,
        )
        self.triggers.append(t)
        if start:
            t.start()
        return t

    def close(self) -> None:
        for t in self.triggers:
            t.stop(5)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "work")
    yield h
    if h.runner.hold is not None:
        h.runner.hold.set()
    h.close()


def _sample(trigger: RetrainTrigger, name: str, **labels: str) -> float:
    value = trigger.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _decision(trigger: RetrainTrigger, request_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((trigger.decisions / f"{request_id}.json").read_text())
    return data


def test_accepted_alert_runs_once_and_starts_a_canary(harness: Harness) -> None:
    trigger = harness.trigger()
    result, request_id = trigger.notify(webhook(alert(model="churn:v1")))
    assert result == "accepted" and request_id
    assert trigger.wait_idle(WAIT_S)

    assert len(harness.runner.runs) == 1
    assert harness.rollout.calls == ["churn:1"]
    decision = _decision(trigger, request_id)
    assert decision["outcome"] == "canary_started"
    assert decision["candidate"] == "churn:1"
    assert decision["alerts"][0]["labels"]["model"] == "churn:v1"  # type: ignore[index]
    assert decision["run"]["run_id"] == harness.runner.runs[0]  # type: ignore[index]
    assert _sample(trigger, "kubeloop_retrain_runs_total", outcome="canary_started") == 1
    assert _sample(trigger, "kubeloop_retrain_notifications_total", result="accepted") == 1
    assert _sample(trigger, "kubeloop_retrain_last_run_timestamp_seconds") == harness.clock.now
    assert _sample(trigger, "kubeloop_retrain_runs_pending") == 0


def test_storm_of_duplicates_starts_exactly_one_run(harness: Harness) -> None:
    hold = threading.Event()
    harness.runner.hold = hold
    trigger = harness.trigger()
    results: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        result, _ = trigger.notify(webhook(alert()))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send) for _ in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hold.set()
    assert trigger.wait_idle(WAIT_S)
    assert results.count("accepted") == 1 and results.count("duplicate") == 149
    assert len(harness.runner.runs) == 1
    assert _sample(trigger, "kubeloop_retrain_notifications_total", result="duplicate") == 149


def test_a_notification_with_several_alerts_is_one_run(harness: Harness) -> None:
    trigger = harness.trigger()
    alerts = [alert(fingerprint=f"{i:016x}", feature=f"f{i}") for i in range(1, 6)]
    assert trigger.notify(webhook(*alerts))[0] == "accepted"
    assert trigger.wait_idle(WAIT_S)
    assert len(harness.runner.runs) == 1
    # Alertmanager re-sends the group with one more alert: only the new one counts.
    more = [*alerts, alert(fingerprint="00000000000000ff", feature="f9")]
    assert trigger.notify(webhook(*more))[0] == "cooldown"


def test_cooldown_then_accepted_once_it_has_passed(harness: Harness) -> None:
    trigger = harness.trigger()
    assert trigger.notify(webhook(alert(fingerprint="01")))[0] == "accepted"
    harness.clock.now += 599
    assert trigger.notify(webhook(alert("ModelStale", fingerprint="02")))[0] == "cooldown"
    harness.clock.now += 1
    # The refused alert was not remembered: still firing after the cooldown, it is taken.
    assert trigger.notify(webhook(alert("ModelStale", fingerprint="02")))[0] == "accepted"
    assert trigger.wait_idle(WAIT_S)
    assert len(harness.runner.runs) == 2


def test_daily_budget(tmp_path: Path) -> None:
    h = Harness(tmp_path, cooldown_s=0, daily_budget=2)
    trigger = h.trigger()
    try:
        got = [trigger.notify(webhook(alert(fingerprint=f"{i:02x}")))[0] for i in range(1, 4)]
        assert got == ["accepted", "accepted", "budget"]
        h.clock.now += DAY_S - 1
        assert trigger.notify(webhook(alert(fingerprint="04")))[0] == "budget"
        h.clock.now += 1  # the first two leave the 24-hour window
        assert trigger.notify(webhook(alert(fingerprint="04")))[0] == "accepted"
        assert trigger.wait_idle(WAIT_S)
        assert len(h.runner.runs) == 3
        assert trigger.status()["budget_left"] == 1
    finally:
        h.close()


def test_same_alert_firing_again_later_is_a_new_episode(harness: Harness) -> None:
    trigger = harness.trigger()
    assert trigger.notify(webhook(alert(starts_at="2026-11-23T01:00:00Z")))[0] == "accepted"
    harness.clock.now += 3600
    assert trigger.notify(webhook(alert(starts_at="2026-11-23T01:00:00Z")))[0] == "duplicate"
    assert trigger.notify(webhook(alert(starts_at="2026-11-23T02:30:00Z")))[0] == "accepted"


def test_resolved_or_disabled_is_ignored(tmp_path: Path) -> None:
    h = Harness(tmp_path, enabled=False)
    trigger = h.trigger()
    try:
        assert trigger.notify(webhook(alert(status="resolved")))[0] == "ignored"
        assert trigger.notify(webhook(alert()))[0] == "ignored"
        assert trigger.wait_idle(WAIT_S) and h.runner.runs == []
    finally:
        h.close()


@pytest.mark.parametrize(
    ("status", "outcome", "says"),
    [("gate_failed", "gate_failed", "roc_auc 0.61 < minimum 0.7"), ("failed", "failed", "boom")],
)
def test_no_passing_model_deploys_nothing_and_says_why(
    harness: Harness, status: str, outcome: str, says: str
) -> None:
    harness.runner.status = status  # type: ignore[assignment]
    trigger = harness.trigger()
    _, request_id = trigger.notify(webhook(alert()))
    assert trigger.wait_idle(WAIT_S) and request_id
    assert harness.rollout.calls == []
    decision = _decision(trigger, request_id)
    assert decision["outcome"] == outcome and decision["action"] == "none"
    assert says in json.dumps(decision)
    assert "current model keeps serving" in str(decision["reason"])
    assert _sample(trigger, "kubeloop_retrain_runs_total", outcome=outcome) == 1


def test_rollout_that_cannot_start_is_recorded(harness: Harness) -> None:
    harness.rollout.error = KubeloopError("a rollout is already in progress")
    trigger = harness.trigger()
    _, request_id = trigger.notify(webhook(alert()))
    assert trigger.wait_idle(WAIT_S) and request_id
    decision = _decision(trigger, request_id)
    assert decision["outcome"] == "rollout_failed"
    assert "a rollout is already in progress" in str(decision["reason"])


def test_without_a_rollout_starter_the_gate_pass_is_recorded(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    runner = RecordingRunner()
    trigger = RetrainTrigger(spec, runner, model_age=False)
    trigger.start()
    try:
        _, request_id = trigger.notify(webhook(alert()))
        assert trigger.wait_idle(WAIT_S)
        decision = json.loads((trigger.decisions / f"{request_id}.json").read_text())
        assert decision["outcome"] == "gate_passed"
        assert "kubeloop rollout start --candidate churn:1" in decision["reason"]
    finally:
        trigger.stop(5)


# ---------------------------------------------------------------------- restarts


def test_restart_keeps_accepted_requests_and_dedupe(harness: Harness) -> None:
    first = harness.trigger(start=False)  # dies before its worker ran anything
    _, request_id = first.notify(webhook(alert()))
    assert harness.runner.runs == []

    second = harness.trigger()
    assert second.wait_idle(WAIT_S)
    assert len(harness.runner.runs) == 1  # the queued request was run, once
    assert second.notify(webhook(alert()))[0] == "duplicate"
    assert second.notify(webhook(alert(fingerprint="99")))[0] == "cooldown"
    third = harness.trigger()
    assert third.wait_idle(WAIT_S)
    assert len(harness.runner.runs) == 1  # a finished request is not repeated
    assert _decision(third, str(request_id))["outcome"] == "canary_started"


def test_restart_during_a_run_reads_its_result_instead_of_running_again(
    harness: Harness,
) -> None:
    hold = threading.Event()
    harness.runner.hold = hold
    first = harness.trigger()
    _, request_id = first.notify(webhook(alert()))
    assert harness.runner.started.wait(WAIT_S)
    (run_id,) = harness.runner.runs
    # The process dies mid-run; the pipeline (a separate process) finishes on its own.
    harness.runner.finished[run_id] = RunResult(
        run_id=run_id, status="succeeded", gate_passed=True, model_tag="churn:7"
    )
    harness.runner.hold = None
    second = harness.trigger()
    assert second.wait_idle(WAIT_S)
    assert harness.runner.runs == [run_id] and harness.runner.recovered == [run_id]
    assert harness.rollout.calls == ["churn:7"]
    assert _decision(second, str(request_id))["outcome"] == "canary_started"
    hold.set()


def test_a_run_that_never_finished_is_run_again_a_bounded_number_of_times(
    harness: Harness,
) -> None:
    store = StateStore(harness.spec.workdir + "/trigger")
    first = harness.trigger(start=False)
    _, request_id = first.notify(webhook(alert()))
    state = store.load()
    (request,) = state.requests
    request.status, request.run_id, request.attempts = "running", "churn-lost", MAX_ATTEMPTS - 1
    store.save(state)

    second = harness.trigger()
    assert second.wait_idle(WAIT_S)
    assert harness.runner.recovered == ["churn-lost"]  # nothing finished: run again
    assert len(harness.runner.runs) == 1 and harness.runner.runs[0] != "churn-lost"

    # Interrupted on every attempt: given up with a reason, not retried forever.
    state = store.load()
    state.requests[0].status, state.requests[0].attempts = "running", MAX_ATTEMPTS
    store.save(state)
    third = harness.trigger()
    assert third.wait_idle(WAIT_S)
    assert len(harness.runner.runs) == 1
    decision = _decision(third, str(request_id))
    assert decision["outcome"] == "failed" and "interrupted" in json.dumps(decision)


def test_a_corrupt_state_file_is_a_clear_error(harness: Harness) -> None:
    path = Path(harness.spec.workdir) / "trigger" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"seen": [1, 2]}')
    with pytest.raises(KubeloopError, match=r"state\.json: not a valid trigger state file"):
        harness.trigger()


def test_each_trigger_has_its_own_registry(harness: Harness) -> None:
    a, b = harness.trigger(start=False), harness.trigger(start=False)
    assert a.registry is not b.registry
    shared = CollectorRegistry()
    RetrainTrigger(harness.spec, harness.runner, registry=shared, model_age=False)
    assert shared.get_sample_value("kubeloop_retrain_runs_pending") == 0


def test_default_rollout_hook_reports_why_the_canary_did_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook calls the real canary controller; here no gateway admin token is set, so
    the rollout cannot start and the decision record carries the controller's message."""
    from kubeloop.serving.trigger.rollout_hook import default_rollout_starter

    spec = make_spec(tmp_path)
    monkeypatch.delenv(spec.serve.admin_token_env, raising=False)
    starter = default_rollout_starter()
    assert starter is not None
    trigger = RetrainTrigger(spec, RecordingRunner(), rollout=starter, model_age=False)
    trigger.start()
    try:
        _, request_id = trigger.notify(webhook(alert()))
        assert trigger.wait_idle(WAIT_S)
        decision = json.loads((trigger.decisions / f"{request_id}.json").read_text())
        assert decision["outcome"] == "rollout_failed"
        assert spec.serve.admin_token_env in decision["reason"]
    finally:
        trigger.stop(5)
