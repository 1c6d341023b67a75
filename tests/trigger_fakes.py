"""Test doubles and builders for the retrain trigger: a spec, Alertmanager webhook payloads,
a fake clock, a recording pipeline runner and rollout starter."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.serving.trigger.runners import RunResult, RunStatus
from kubeloop.serving.trigger.webhook import WebhookPayload

T0 = 1_750_000_000.0  # a fixed start for the fake clock


def make_spec(workdir: Path, **retrain: Any) -> Spec:
    return parse_spec(
        {
            "name": "churn",
            "workdir": str(workdir),
            "data": {"source": "churn.csv", "label": "churned"},
            "retrain": {"cooldown_s": 600, "daily_budget": 3, **retrain},
        }
    )


def alert(
    name: str = "ModelDriftDetected",
    fingerprint: str = "a1b2c3d4e5f60718",
    starts_at: str = "2026-11-23T01:00:00Z",
    status: str = "firing",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "action": "retrain", "severity": "warning", **labels},
        "annotations": {"summary": f"{name} fired"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ModelDriftDetected"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "kubeloop-retrain-trigger",
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def webhook(*alerts: dict[str, Any]) -> WebhookPayload:
    return WebhookPayload.model_validate(payload(*alerts))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingRunner:
    """Records the runs it is asked for and answers with `status` (a registered model tag
    when it succeeds). With `hold`, each run waits until the event is set."""

    def __init__(self, status: RunStatus = "succeeded", hold: threading.Event | None = None):
        self.status = status
        self.hold = hold
        self.runs: list[str] = []
        self.recovered: list[str] = []
        self.finished: dict[str, RunResult] = {}  # what recover() finds
        self.started = threading.Event()

    def result(self, run_id: str) -> RunResult:
        passed = {"succeeded": True, "gate_failed": False}.get(self.status)
        return RunResult(
            run_id=run_id,
            status=self.status,
            gate_passed=passed,
            gate_reasons=[] if passed else ["roc_auc 0.61 < minimum 0.7"],
            model_tag=f"churn:{len(self.runs)}" if passed else None,
            error="train: RuntimeError: boom" if self.status == "failed" else None,
        )

    def run(self, run_id: str) -> RunResult:
        self.runs.append(run_id)
        self.started.set()
        if self.hold is not None:
            self.hold.wait(60)
        return self.result(run_id)

    def recover(self, run_id: str) -> RunResult | None:
        self.recovered.append(run_id)
        return self.finished.get(run_id)


class RecordingRollout:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    def __call__(self, spec: Spec, candidate: str) -> dict[str, Any]:
        self.calls.append(candidate)
        if self.error:
            raise self.error
        return {"started_at": datetime.now(UTC).isoformat(), "candidate": candidate}
