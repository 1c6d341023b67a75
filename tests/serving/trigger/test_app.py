"""The trigger's HTTP face over ASGI: payload validation (4xx with a JSON error naming the
field), the notification result, /status, /metrics and /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kubeloop.serving.trigger.app import MAX_BODY_BYTES, create_app
from kubeloop.serving.trigger.trigger import RetrainTrigger
from tests.trigger_fakes import RecordingRunner, alert, make_spec, payload


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def client(tmp_path: Path, runner: RecordingRunner) -> Iterator[TestClient]:
    trigger = RetrainTrigger(make_spec(tmp_path), runner, model_age=False)
    with TestClient(create_app(trigger)) as c:
        yield c


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def test_a_notification_is_accepted_then_duplicate(client: TestClient) -> None:
    first = client.post("/alerts", json=payload())
    assert first.status_code == 200, first.text
    assert first.json()["result"] == "accepted" and first.json()["request_id"]
    again = client.post("/alerts", json=payload())
    assert again.json() == {"result": "duplicate", "request_id": None}
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (_without(payload(), "alerts"), "alerts", "Field required"),
        ({**payload(), "alerts": []}, "alerts", "at least 1 item"),
        ({**payload(), "version": "3"}, "version", "'4'"),
        (payload(_without(alert(), "fingerprint")), "alerts.0.fingerprint", "Field required"),
        (payload(alert(fingerprint="not hex!")), "alerts.0.fingerprint", "pattern"),
        (payload({**alert(), "startsAt": "yesterday"}), "alerts.0.startsAt", "datetime"),
        (payload({**alert(), "labels": {"severity": "x"}}), "alerts.0.labels", "alertname"),
        (payload({**alert(), "status": "pending"}), "alerts.0.status", "firing"),
        (["not", "an", "object"], "(body)", "valid dictionary"),
    ],
)
def test_bad_payloads_get_400_naming_the_field(
    client: TestClient, runner: RecordingRunner, body: Any, field: str, says: str
) -> None:
    reply = client.post("/alerts", json=body)
    assert reply.status_code == 400
    data = reply.json()
    assert "Alertmanager webhook payload" in data["error"]
    (detail,) = [d for d in data["details"] if d["field"] == field]
    assert says in detail["error"]
    assert runner.runs == []


def test_body_that_is_not_json_or_too_large(client: TestClient) -> None:
    reply = client.post("/alerts", content=b"{nope", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"].startswith("body is not JSON")
    big = client.post("/alerts", content=b" " * (MAX_BODY_BYTES + 1))
    assert big.status_code == 413
    metrics = client.get("/metrics").text
    assert 'kubeloop_retrain_notifications_total{result="invalid"} 2.0' in metrics


def test_status_and_metrics(client: TestClient, runner: RecordingRunner) -> None:
    client.post("/alerts", json=payload())
    client.post("/alerts", json=payload(alert(fingerprint="ff")))  # within the cooldown
    status = client.get("/status").json()
    assert status["enabled"] is True and status["budget_left"] == 2
    assert 0 < status["cooldown_left_s"] <= 600
    metrics = client.get("/metrics").text
    for line in (
        'kubeloop_retrain_notifications_total{result="accepted"} 1.0',
        'kubeloop_retrain_notifications_total{result="cooldown"} 1.0',
        'kubeloop_retrain_runs_total{outcome="failed"} 0.0',
    ):
        assert line in metrics
    assert "kubeloop_retrain_last_run_timestamp_seconds" in metrics
